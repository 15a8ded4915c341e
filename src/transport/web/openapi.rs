//! The OpenAPI 3.1 description of the JSON API, written from the compiled
//! contract: every path, message and enum comes from the descriptors the
//! server transcodes with, and every description from the proto comments,
//! so it cannot say anything the contract does not.

use std::collections::BTreeMap;

use prost_reflect::{
    DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    ServiceDescriptor,
};
use serde_json::{json, Map, Value};

use super::transcode::pool;

/// The leading comment of the element at `path` in `file`, if any.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?.trim();
    (!text.is_empty()).then(|| text.lines().map(str::trim).collect::<Vec<_>>().join("\n"))
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The schema of one value of a field's kind under the JSON mapping;
/// names every message or enum it refers to in `needed`.
fn kind_schema(kind: &Kind, needed: &mut Vec<String>) -> Value {
    match kind {
        Kind::Double | Kind::Float => json!({ "type": "number" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "format": "uint32" }),
        // 64-bit integers are strings in JSON: a double cannot hold them.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "string", "format": "int64" })
        }
        Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64" }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Kind::Enum(e) => {
            needed.push(e.full_name().to_string());
            reference(e.full_name())
        }
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
            "google.protobuf.Duration" => {
                json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$" })
            }
            name => {
                needed.push(name.to_string());
                reference(name)
            }
        },
    }
}

fn field_schema(field: &FieldDescriptor, needed: &mut Vec<String>) -> Value {
    let mut schema = if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        json!({
            "type": "object",
            "additionalProperties": kind_schema(&entry.map_entry_value_field().kind(), needed),
        })
    } else if field.is_list() {
        json!({ "type": "array", "items": kind_schema(&field.kind(), needed) })
    } else {
        kind_schema(&field.kind(), needed)
    };
    if let Some(text) = comment(&field.parent_file(), field.path()) {
        // Beside a $ref, 3.1 allows a description.
        schema["description"] = Value::String(text);
    }
    schema
}

fn message_schema(message: &MessageDescriptor, needed: &mut Vec<String>) -> Value {
    if message.full_name() == "google.protobuf.Any" {
        return json!({
            "type": "object",
            "description": "A message of the type its @type names, with that type's fields beside it.",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
            "additionalProperties": true,
        });
    }
    let mut properties = Map::new();
    for field in message.fields() {
        properties.insert(field.json_name().to_string(), field_schema(&field, needed));
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    let oneofs: Vec<Vec<String>> = message
        .oneofs()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.fields().map(|f| f.json_name().to_string()).collect())
        .collect();
    if !oneofs.is_empty() {
        let cases: Vec<String> = oneofs.iter().map(|fields| fields.join(", ")).collect();
        let note = format!("At most one of each group is set: {}.", cases.join("; "));
        schema["x-oneofs"] = json!(oneofs);
        schema["description"] = Value::String(note);
    }
    if let Some(text) = comment(&message.parent_file(), message.path()) {
        let note = schema["description"].as_str().map(|n| format!("\n\n{n}"));
        schema["description"] = Value::String(text + &note.unwrap_or_default());
    }
    schema
}

/// The OpenAPI description of every method the JSON API serves.
pub fn openapi() -> Value {
    let pool = pool();
    let mut paths = Map::new();
    let mut needed = vec!["google.rpc.Status".to_string()];
    for service in pool.services() {
        if service.package_name() != "lodestone.v1" {
            continue;
        }
        for method in service.methods() {
            if !method.is_client_streaming() {
                paths.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    path_item(&service, &method, &mut needed),
                );
            }
        }
    }
    let schemas = schemas(pool, needed);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lodestone",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Which production lines stop, when and why, as rare-earth export licences are granted, delayed or refused. The gRPC contract lodestone.v1 as JSON over HTTP: each method is POST /<service>/<method> with the request message in protobuf's canonical JSON mapping.",
        },
        "servers": [{ "url": "http://127.0.0.1:50051" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of the server's token file (lodestone token), when it runs with --auth-tokens, or an access token (a JWT) of its identity provider, when it runs with --oidc-issuer.",
                },
            },
        },
    })
}

/// The operations of one method: a POST, and for a stream a GET too. The
/// messages they refer to are added to `needed`.
fn path_item(
    service: &ServiceDescriptor,
    method: &MethodDescriptor,
    needed: &mut Vec<String>,
) -> Value {
    let input = method.input().full_name().to_string();
    let output = method.output().full_name().to_string();
    needed.push(input.clone());
    needed.push(output.clone());
    let summary = comment(&method.parent_file(), method.path()).unwrap_or_default();
    let error = json!({
        "description": "The call was refused: a google.rpc.Status, under the HTTP status of its code (400 invalid argument or failed precondition, 401 unauthenticated, 403 permission denied, 404 not found, 409 aborted, 429 resource exhausted, 503 unavailable, 504 deadline exceeded).",
        "content": { "application/json": { "schema": reference("google.rpc.Status") } },
    });
    let mut operation = json!({
        "operationId": format!("{}_{}", service.name(), method.name()),
        "tags": [service.name()],
        "description": summary,
        "requestBody": {
            "required": false,
            "content": { "application/json": { "schema": reference(&input) } },
        },
        "responses": { "default": error },
    });
    if !method.is_server_streaming() {
        operation["responses"]["200"] = json!({
            "description": "The answer.",
            "content": { "application/json": { "schema": reference(&output) } },
        });
        return json!({ "post": operation });
    }
    operation["responses"]["200"] = json!({
        "description": "A stream of messages: newline-delimited JSON by default, server-sent events (named by the message's case, with the licence sequence as the event id) with Accept: text/event-stream. A stream that ends with an error ends with {\"error\": google.rpc.Status}, or an `error` event.",
        "content": {
            "application/x-ndjson": { "schema": reference(&output) },
            "text/event-stream": { "schema": { "type": "string" } },
        },
    });
    let mut get = operation.clone();
    get["operationId"] = json!(format!("{}_{}_Get", service.name(), method.name()));
    get.as_object_mut()
        .expect("an object")
        .remove("requestBody");
    get["parameters"] = json!(method
        .input()
        .fields()
        .filter(|f| !matches!(f.kind(), Kind::Message(_)))
        .map(|f| json!({
            "name": f.name(),
            "in": "query",
            "required": false,
            "explode": true,
            "schema": field_schema(&f, needed),
        }))
        .collect::<Vec<_>>());
    get["description"] = json!(format!(
        "{summary}\n\nThe request's fields as query parameters, for EventSource. A Last-Event-ID header continues after that licence sequence."
    ));
    json!({ "post": operation, "get": get })
}

/// The schemas of the `needed` messages and enums, and of everything they
/// refer to, by full name.
fn schemas(pool: &DescriptorPool, mut needed: Vec<String>) -> BTreeMap<String, Value> {
    let mut schemas = BTreeMap::new();
    while let Some(name) = needed.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let schema = if let Some(message) = pool.get_message_by_name(&name) {
            message_schema(&message, &mut needed)
        } else if let Some(e) = pool.get_enum_by_name(&name) {
            let mut schema = json!({
                "type": "string",
                "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>(),
            });
            if let Some(text) = comment(&e.parent_file(), e.path()) {
                schema["description"] = Value::String(text);
            }
            schema
        } else {
            unreachable!("{name} is referred to by the contract, so it is in the pool")
        };
        schemas.insert(name, schema);
    }
    schemas
}

/// [`openapi`] as the text the repository keeps in `openapi/lodestone.v1.json`.
pub fn openapi_text() -> String {
    let mut text = serde_json::to_string_pretty(&openapi()).expect("a JSON value prints");
    text.push('\n');
    text
}
