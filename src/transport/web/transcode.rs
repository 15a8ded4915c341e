//! One JSON call as the gRPC call it stands for: the request message from
//! the body (or, for a stream, the query), the gRPC exchange through the
//! service stack, and the answer back as JSON, as server-sent events or as
//! newline-delimited JSON.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, ReflectMessage,
    SerializeOptions,
};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::Service;

use super::{plain, BoxError};

/// The contract's services, the well-known types and `google.rpc`'s
/// error details, so that a status's details turn into JSON with their
/// `@type`.
pub(super) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set is valid");
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .expect("tonic-types' descriptor set fits the contract's");
        pool
    })
}

/// The package whose services the JSON API serves.
const PACKAGE: &str = "lodestone.v1";

/// The HTTP status of a gRPC code, as `google.rpc.Code` documents it.
pub fn http_status(code: Code) -> StatusCode {
    let status = match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    };
    StatusCode::from_u16(status).expect("a valid HTTP status")
}

/// `status` as a JSON `google.rpc.Status`, details included.
fn status_json(status: &Status) -> Bytes {
    let descriptor = pool()
        .get_message_by_name("google.rpc.Status")
        .expect("google.rpc.Status is in the pool");
    // The details travel as the whole google.rpc.Status, encoded.
    let mut message = (!status.details().is_empty())
        .then(|| DynamicMessage::decode(descriptor.clone(), status.details()).ok())
        .flatten()
        .unwrap_or_else(|| DynamicMessage::new(descriptor.clone()));
    message.set_field_by_name("code", prost_reflect::Value::I32(status.code() as i32));
    message.set_field_by_name(
        "message",
        prost_reflect::Value::String(status.message().to_string()),
    );
    let json = to_json(&message).or_else(|_| {
        // A detail of a type the pool does not know: the code and message.
        message.clear_field_by_name("details");
        to_json(&message)
    });
    Bytes::from(
        json.unwrap_or_else(|_| format!(r#"{{"code":{}}}"#, status.code() as i32).into_bytes()),
    )
}

fn to_json(message: &DynamicMessage) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::Serializer::new(Vec::new());
    message.serialize_with_options(&mut out, &SerializeOptions::new())?;
    Ok(out.into_inner())
}

/// The answer that refuses a call with `status`.
pub(crate) fn refusal(status: Status) -> Response<Body> {
    plain(
        http_status(status.code()),
        "application/json",
        status_json(&status),
    )
}

/// How a stream's messages are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `text/event-stream`: an event per message, named by the message's
    /// `oneof` case, with the licence sequence as its id where there is one.
    Events,
    /// `application/x-ndjson`: a JSON object per line.
    Lines,
}

impl Framing {
    fn of(headers: &HeaderMap) -> Framing {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accept.contains("text/event-stream") {
            Framing::Events
        } else {
            Framing::Lines
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Framing::Events => "text/event-stream",
            Framing::Lines => "application/x-ndjson",
        }
    }
}

/// Turns JSON calls into gRPC calls.
pub struct Transcoder {
    max_message: usize,
}

impl Transcoder {
    pub fn new(max_message: usize) -> Transcoder {
        // Build the pool now: a broken descriptor set fails at start-up.
        pool();
        Transcoder { max_message }
    }

    /// Serves one HTTP request that is not gRPC.
    pub async fn call<S, ResBody>(
        &self,
        mut inner: S,
        request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<ResBody>>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let method = match admitted(&request) {
            Ok(method) => method,
            Err(refused) => return Ok(refused),
        };
        let streaming = method.is_server_streaming();
        let framing = Framing::of(request.headers());
        let (parts, body) = request.into_parts();
        let mut input = match self.input(&method, &parts, body).await {
            Ok(input) => input,
            Err(refused) => return Ok(refused),
        };
        if streaming {
            resume_after_last_event(&mut input, &parts.headers);
        }
        let (head, body) = inner.call(grpc_request(&input, parts)).await?.into_parts();
        if let Some(status) = Status::from_header_map(&head.headers) {
            // Trailers-only: refused before any message.
            if status.code() != Code::Ok {
                return Ok(refusal(status));
            }
        }
        let output = method.output();
        if streaming {
            let mut answer = Response::new(Body::new(StreamBody::new(events(
                Box::pin(body),
                output,
                framing,
            ))));
            let headers = answer.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(framing.content_type()),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(answer);
        }
        Ok(unary_answer(body, output).await)
    }

    /// The request message, from the query of a GET or the JSON body of a
    /// POST; a refusal when there is none.
    async fn input(
        &self,
        method: &MethodDescriptor,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<DynamicMessage, Response<Body>> {
        let input = if parts.method == Method::GET {
            query_message(method.input(), parts.uri.query().unwrap_or_default())
        } else {
            if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
                let json = content_type
                    .to_str()
                    .ok()
                    .and_then(|v| v.split(';').next())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
                if !json {
                    let mut answer = refusal(Status::invalid_argument(
                        "send the request as JSON, with Content-Type: application/json",
                    ));
                    *answer.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
                    return Err(answer);
                }
            }
            match Limited::new(body, self.max_message).collect().await {
                Ok(bytes) => body_message(method.input(), &bytes.to_bytes()),
                Err(error) if error.is::<LengthLimitError>() => {
                    let mut answer = refusal(Status::resource_exhausted(format!(
                        "the request body is over {} bytes (--max-message-mb)",
                        self.max_message
                    )));
                    *answer.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                    return Err(answer);
                }
                Err(error) => {
                    return Err(refusal(Status::invalid_argument(format!(
                        "the request body could not be read: {error}"
                    ))))
                }
            }
        };
        input.map_err(|error| {
            refusal(Status::invalid_argument(format!(
                "the request is not a {}: {error}",
                method.input().full_name()
            )))
        })
    }
}

/// The method a request calls, if JSON over HTTP can call it that way; a
/// refusal that says why not otherwise.
// A refusal is the answer, made once a request: its size costs nothing.
#[allow(clippy::result_large_err)]
fn admitted(request: &Request<Body>) -> Result<MethodDescriptor, Response<Body>> {
    let method = method_of(request.uri().path()).map_err(refusal)?;
    let streaming = method.is_server_streaming();
    let allowed =
        request.method() == Method::POST || (streaming && request.method() == Method::GET);
    if !allowed {
        let mut answer = refusal(Status::unimplemented(format!(
            "{} takes {}",
            method.full_name(),
            if streaming { "GET or POST" } else { "POST" }
        )));
        *answer.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        answer.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(if streaming { "GET, POST" } else { "POST" }),
        );
        return Err(answer);
    }
    if method.is_client_streaming() {
        return Err(refusal(Status::unimplemented(format!(
            "{} streams its requests, which JSON over HTTP cannot: call it over gRPC, \
             or send the records with UpsertRecords",
            method.full_name()
        ))));
    }
    Ok(method)
}

/// The gRPC call for `input`, with the HTTP request's path, metadata and
/// extensions.
fn grpc_request(input: &DynamicMessage, parts: http::request::Parts) -> Request<Body> {
    let mut grpc = Request::new(Body::new(Full::new(frame(&input.encode_to_vec()))));
    *grpc.method_mut() = Method::POST;
    *grpc.uri_mut() = parts.uri.path().parse().expect("a path is a URI");
    *grpc.version_mut() = Version::HTTP_2;
    *grpc.headers_mut() = metadata(&parts.headers);
    *grpc.extensions_mut() = parts.extensions;
    grpc
}

/// A unary call's answer as JSON, or its refusal.
async fn unary_answer<ResBody>(body: ResBody, output: MessageDescriptor) -> Response<Body>
where
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => {
            let error: BoxError = error.into();
            return refusal(Status::unavailable(format!("the call broke off: {error}")));
        }
    };
    let status = collected
        .trailers()
        .and_then(Status::from_header_map)
        .unwrap_or_else(|| Status::internal("the call ended without a status"));
    if status.code() != Code::Ok {
        return refusal(status);
    }
    let mut data = collected.to_bytes();
    let json = match next_message(&mut data) {
        Ok(Some(message)) => DynamicMessage::decode(output, message)
            .map_err(|e| e.to_string())
            .and_then(|m| to_json(&m).map_err(|e| e.to_string())),
        Ok(None) => Err("the answer held no message".to_string()),
        Err(error) => Err(error),
    };
    match json {
        Ok(json) => plain(StatusCode::OK, "application/json", Bytes::from(json)),
        Err(error) => refusal(Status::internal(format!(
            "the answer could not be written as JSON: {error}"
        ))),
    }
}

/// The contract's method a path names (`/lodestone.v1.RiskService/GetExposure`).
fn method_of(path: &str) -> Result<MethodDescriptor, Status> {
    let not_found = || {
        Status::not_found(format!(
            "nothing at {path}: the JSON API answers POST /{PACKAGE}.RecordService/<method> \
             and POST /{PACKAGE}.RiskService/<method> (see /openapi.json)"
        ))
    };
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(not_found)?;
    if service.rsplit_once('.').map(|(package, _)| package) != Some(PACKAGE) {
        return Err(not_found());
    }
    pool()
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .ok_or_else(not_found)
}

/// The request message from a JSON body; an empty body is the empty
/// message.
fn body_message(descriptor: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(descriptor));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let message =
        DynamicMessage::deserialize(descriptor, &mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(message)
}

/// The request message from a query string: each parameter a top-level
/// field by its proto or JSON name, repeated fields by repeating it.
fn query_message(descriptor: MessageDescriptor, query: &str) -> Result<DynamicMessage, String> {
    let mut object = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let field = descriptor
            .get_field_by_name(&key)
            .or_else(|| descriptor.get_field_by_json_name(&key))
            .ok_or_else(|| format!("it has no field {key:?}"))?;
        let value = match field.kind() {
            Kind::Message(_) => {
                return Err(format!(
                    "{key} is a message: POST the request as JSON to give it"
                ))
            }
            Kind::Bool => match value.as_ref() {
                "" | "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                other => return Err(format!("{key} is true or false, not {other:?}")),
            },
            // The JSON mapping reads numbers from strings too.
            _ => serde_json::Value::String(value.into_owned()),
        };
        if field.is_list() {
            object
                .entry(field.name().to_string())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                .as_array_mut()
                .expect("a list field's entry is an array")
                .push(value);
        } else if object.insert(field.name().to_string(), value).is_some() {
            return Err(format!("{key} is given twice"));
        }
    }
    DynamicMessage::deserialize(descriptor, serde_json::Value::Object(object))
        .map_err(|e| e.to_string())
}

/// An `EventSource` that reconnects sends the id of the last event it
/// saw: a stream whose request has `after_sequence` continues after it.
fn resume_after_last_event(input: &mut DynamicMessage, headers: &HeaderMap) {
    let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return;
    };
    if input
        .descriptor()
        .get_field_by_name("after_sequence")
        .is_some()
    {
        input.set_field_by_name("after_sequence", prost_reflect::Value::U64(last));
        input.clear_field_by_name("from_now");
    }
}

/// The request's headers as gRPC metadata: authorization, the
/// consistency and tracing headers, a deadline, and whatever else the
/// caller sent, without HTTP's own.
fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len() + 2);
    for (name, value) in headers {
        let own = matches!(
            name.as_str(),
            "content-type"
                | "content-length"
                | "accept"
                | "accept-encoding"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "upgrade"
                | "host"
                | "te"
                | "last-event-id"
                | "grpc-encoding"
                | "grpc-accept-encoding"
        );
        if !own {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    out.insert(header::TE, HeaderValue::from_static("trailers"));
    out
}

/// One gRPC message frame: uncompressed, its length, the message.
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Takes the next whole message frame off the front of `data`.
fn next_message<B: Buf>(data: &mut B) -> Result<Option<Bytes>, String> {
    let chunk = data.chunk();
    if data.remaining() < 5 || chunk.len() < 5 {
        return Ok(None);
    }
    if chunk[0] != 0 {
        return Err("a compressed message, which was not asked for".into());
    }
    let length = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize;
    if data.remaining() < 5 + length {
        return Ok(None);
    }
    data.advance(5);
    Ok(Some(data.copy_to_bytes(length)))
}

/// The name of the `oneof` case a stream's message holds (`update`,
/// `heartbeat`, `snapshot`, `change`), and the licence sequence within
/// it, if it has one.
fn event_of(message: &DynamicMessage) -> (Option<String>, Option<u64>) {
    for field in message.descriptor().fields() {
        if field.containing_oneof().is_none() || !message.has_field(&field) {
            continue;
        }
        let sequence = match message.get_field(&field).as_message() {
            Some(inner) => inner.get_field_by_name("sequence").and_then(|v| v.as_u64()),
            None => None,
        };
        return (Some(field.name().to_string()), sequence);
    }
    (None, None)
}

/// The text of one message of a stream, or of its closing error.
fn event_text(framing: Framing, message: Result<&DynamicMessage, &Status>) -> Bytes {
    let (name, id, json) = match message {
        Ok(message) => {
            let (name, id) = event_of(message);
            let json = to_json(message).unwrap_or_else(|error| {
                status_json(&Status::internal(format!(
                    "a message could not be written as JSON: {error}"
                )))
                .to_vec()
            });
            (name, id, json)
        }
        Err(status) => (
            Some("error".to_string()),
            None,
            status_json(status).to_vec(),
        ),
    };
    let mut out = Vec::with_capacity(json.len() + 48);
    match framing {
        Framing::Events => {
            if let Some(name) = name {
                out.extend_from_slice(format!("event: {name}\n").as_bytes());
            }
            if let Some(id) = id {
                out.extend_from_slice(format!("id: {id}\n").as_bytes());
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&json);
            out.extend_from_slice(b"\n\n");
        }
        Framing::Lines if message.is_err() => {
            out.extend_from_slice(b"{\"error\":");
            out.extend_from_slice(&json);
            out.extend_from_slice(b"}\n");
        }
        Framing::Lines => {
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

type Frames = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, BoxError>> + Send>,
>;

/// A gRPC response stream as events: each message as it arrives, then an
/// error event when the call ends with one.
fn events<B>(body: std::pin::Pin<Box<B>>, output: MessageDescriptor, framing: Framing) -> Frames
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    struct State<B> {
        body: std::pin::Pin<Box<B>>,
        buffer: BytesMut,
        output: MessageDescriptor,
        done: bool,
    }
    let state = State {
        body,
        buffer: BytesMut::new(),
        output,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut state| async move {
            loop {
                if state.done {
                    return None;
                }
                match next_message(&mut state.buffer) {
                    Ok(Some(bytes)) => {
                        let text = match DynamicMessage::decode(state.output.clone(), bytes) {
                            Ok(message) => event_text(framing, Ok(&message)),
                            Err(error) => {
                                state.done = true;
                                event_text(
                                    framing,
                                    Err(&Status::internal(format!(
                                        "a message did not decode: {error}"
                                    ))),
                                )
                            }
                        };
                        return Some((Ok(http_body::Frame::data(text)), state));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        state.done = true;
                        let text = event_text(framing, Err(&Status::internal(error)));
                        return Some((Ok(http_body::Frame::data(text)), state));
                    }
                }
                match state.body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => state.buffer.put(data),
                        Err(frame) => {
                            state.done = true;
                            let status = frame
                                .trailers_ref()
                                .and_then(Status::from_header_map)
                                .unwrap_or_else(|| {
                                    Status::internal("the stream ended without a status")
                                });
                            if status.code() != Code::Ok {
                                let text = event_text(framing, Err(&status));
                                return Some((Ok(http_body::Frame::data(text)), state));
                            }
                        }
                    },
                    Some(Err(error)) => {
                        state.done = true;
                        let error: BoxError = error.into();
                        let status = Status::unavailable(format!("the stream broke off: {error}"));
                        let text = event_text(framing, Err(&status));
                        return Some((Ok(http_body::Frame::data(text)), state));
                    }
                    None => state.done = true,
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_http_status_google_rpc_code_gives_it() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::Aborted), StatusCode::CONFLICT);
    }

    #[test]
    fn paths_name_the_contracts_methods_only() {
        let method = method_of("/lodestone.v1.RiskService/GetExposure").unwrap();
        assert_eq!(
            method.input().full_name(),
            "lodestone.v1.GetExposureRequest"
        );
        for path in [
            "/",
            "/lodestone.v1.RiskService",
            "/lodestone.v1.RiskService/Nope",
            "/grpc.health.v1.Health/Check",
            "/google.rpc.Status/x",
        ] {
            assert_eq!(
                method_of(path).unwrap_err().code(),
                Code::NotFound,
                "{path}"
            );
        }
    }

    #[test]
    fn a_query_fills_the_top_level_fields() {
        let input = method_of("/lodestone.v1.RiskService/StreamLicenseUpdates")
            .unwrap()
            .input();
        let message = query_message(
            input.clone(),
            "after_sequence=7&materials=DY&materials=TB&heartbeatSeconds=5&statuses=LICENSE_STATUS_APPROVED",
        )
        .unwrap();
        let json = String::from_utf8(to_json(&message).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"afterSequence":"7","materials":["DY","TB"],"statuses":["LICENSE_STATUS_APPROVED"],"heartbeatSeconds":5}"#
        );
        assert!(query_message(input.clone(), "nope=1")
            .unwrap_err()
            .contains("no field \"nope\""));
        assert!(query_message(input.clone(), "from_now=maybe").is_err());
        assert!(query_message(input, "after_sequence=1&after_sequence=2").is_err());
    }

    #[test]
    fn last_event_id_continues_a_licence_stream_after_it() {
        let input = method_of("/lodestone.v1.RiskService/StreamLicenseUpdates")
            .unwrap()
            .input();
        let mut message = query_message(input, "from_now=true").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("41"));
        resume_after_last_event(&mut message, &headers);
        let json = String::from_utf8(to_json(&message).unwrap()).unwrap();
        assert_eq!(json, r#"{"afterSequence":"41"}"#);
    }

    #[test]
    fn frames_come_off_whole_or_not_at_all() {
        let mut data = BytesMut::new();
        data.put(frame(b"abc"));
        data.put(frame(b""));
        let whole = data.clone().freeze();
        let mut partial = BytesMut::from(&whole[..6]);
        assert_eq!(next_message(&mut partial).unwrap(), None);
        assert_eq!(partial.len(), 6);
        assert_eq!(next_message(&mut data).unwrap().unwrap(), &b"abc"[..]);
        assert_eq!(next_message(&mut data).unwrap().unwrap(), &b""[..]);
        assert_eq!(next_message(&mut data).unwrap(), None);
        let mut compressed = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(next_message(&mut compressed).is_err());
    }

    #[test]
    fn a_status_with_details_is_json_with_their_types() {
        use tonic_types::{ErrorDetails, StatusExt};
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("horizon_days", "must be 1 to 730");
        let status = Status::with_error_details(Code::InvalidArgument, "bad horizon", details);
        let json: serde_json::Value = serde_json::from_slice(&status_json(&status)).unwrap();
        assert_eq!(json["code"], 3);
        assert_eq!(json["message"], "bad horizon");
        assert_eq!(
            json["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            json["details"][0]["fieldViolations"][0]["field"],
            "horizon_days"
        );
        let plain: serde_json::Value =
            serde_json::from_slice(&status_json(&Status::not_found("no such licence"))).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"code": 5, "message": "no such licence"})
        );
    }

    #[test]
    fn events_are_named_by_their_case_and_carry_the_sequence() {
        let output = method_of("/lodestone.v1.RiskService/StreamLicenseUpdates")
            .unwrap()
            .output();
        let message = body_message(
            output,
            br#"{"update": {"sequence": "12", "revision": "3"}}"#,
        )
        .unwrap();
        let text = event_text(Framing::Events, Ok(&message));
        let text = std::str::from_utf8(&text).unwrap();
        assert!(
            text.starts_with("event: update\nid: 12\ndata: {\"update\":"),
            "{text}"
        );
        assert!(text.ends_with("}\n\n"));
        let line = event_text(Framing::Lines, Err(&Status::unavailable("bye")));
        assert_eq!(
            &line[..],
            &b"{\"error\":{\"code\":14,\"message\":\"bye\"}}\n"[..]
        );
    }
}
