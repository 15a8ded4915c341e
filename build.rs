//! Compiles the protobuf contract with protox (pure Rust, no system protoc) and
//! keeps the encoded descriptor set for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["lodestone/v1/records.proto", "lodestone/v1/risk.proto"];
const REFLECTED_EXTRA: &[&str] = &[
    "google/protobuf/any.proto",
    "google/protobuf/duration.proto",
];

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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
