//! Compiles the protobuf contract with protox (pure Rust, no system protoc) and
//! keeps the encoded descriptor set for gRPC server reflection.
//!
//! Messages and clients come from tonic-prost-build. The servers are generated
//! from the same descriptors through tonic-build's manual builder, so that a
//! method can answer with a message it holds already encoded (`PREENCODED`):
//! a warm answer is then a lookup and a copy, not thousands of strings
//! written again. Everything else about the servers is what tonic-prost-build
//! would have generated.

use std::{env, fs, path::PathBuf};

use heck::ToSnakeCase;
use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet, SourceCodeInfo};
use tonic_build::manual;

const PROTOS: &[&str] = &["lodestone/v1/records.proto", "lodestone/v1/risk.proto"];
const REFLECTED_EXTRA: &[&str] = &[
    "google/protobuf/any.proto",
    "google/protobuf/duration.proto",
];
/// Methods whose servers answer `crate::pb::Encoded<Response>`.
const PREENCODED: &[&str] = &["lodestone.v1.RiskService/GetExposure"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    // Reflection also serves the well-known types that google.rpc error
    // details import, so that grpcurl can decode ErrorInfo and BadRequest.
    let reflected = protox::compile(PROTOS.iter().chain(REFLECTED_EXTRA), ["proto"])?;
    fs::write(
        out_dir.join("lodestone_descriptor.bin"),
        reflected.encode_to_vec(),
    )?;
    let servers = servers(&fds)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    manual::Builder::new()
        .build_client(false)
        .build_server(true)
        .compile(&servers);
    Ok(())
}

/// The server definitions of every service in `fds`.
fn servers(fds: &FileDescriptorSet) -> Result<Vec<manual::Service>, String> {
    let mut services = Vec::new();
    let mut preencoded = Vec::new();
    for file in &fds.file {
        let package = file.package();
        for (s, service) in file.service.iter().enumerate() {
            let mut builder = manual::Service::builder()
                .name(service.name())
                .package(package);
            for line in comment(file, &[6, s as i32]) {
                builder = builder.comment(line);
            }
            for (m, method) in service.method.iter().enumerate() {
                let route = format!("{package}.{}/{}", service.name(), method.name());
                let output = rust_type(file, method.output_type())?;
                let output = if PREENCODED.contains(&route.as_str()) {
                    preencoded.push(route);
                    format!("crate::pb::Encoded<{output}>")
                } else {
                    output
                };
                let mut method_builder = manual::Method::builder()
                    .name(method.name().to_snake_case())
                    .route_name(method.name())
                    .input_type(rust_type(file, method.input_type())?)
                    .output_type(output)
                    .codec_path("tonic_prost::ProstCodec");
                for line in comment(file, &[6, s as i32, 2, m as i32]) {
                    method_builder = method_builder.comment(line);
                }
                if method.client_streaming() {
                    method_builder = method_builder.client_streaming();
                }
                if method.server_streaming() {
                    method_builder = method_builder.server_streaming();
                }
                builder = builder.method(method_builder.build());
            }
            services.push(builder.build());
        }
    }
    if let Some(route) = PREENCODED
        .iter()
        .find(|r| !preencoded.iter().any(|p| p == *r))
    {
        return Err(format!("{route} is not a method of the contract"));
    }
    Ok(services)
}

/// The Rust path of a message of the contract's package.
fn rust_type(file: &FileDescriptorProto, proto_type: &str) -> Result<String, String> {
    let prefix = format!(".{}.", file.package());
    match proto_type.strip_prefix(&prefix) {
        Some(name) if !name.contains('.') => Ok(format!("crate::pb::{name}")),
        _ => Err(format!(
            "{proto_type} is not a top-level message of {}",
            file.package()
        )),
    }
}

/// The lines of the comment in front of the element at `path`.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> Vec<String> {
    let locations = file
        .source_code_info
        .as_ref()
        .map(|info: &SourceCodeInfo| info.location.as_slice())
        .unwrap_or_default();
    locations
        .iter()
        .find(|l| l.path == path)
        .map(|l| {
            l.leading_comments()
                .lines()
                .map(|line| line.strip_prefix(' ').unwrap_or(line).to_string())
                .collect()
        })
        .unwrap_or_default()
}
