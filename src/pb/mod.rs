//! The protobuf contract (`proto/lodestone/v1`), compiled by `build.rs`, and
//! the translation between its messages and the domain: records (`convert`)
//! and risk questions and answers (`risk`).
//!
//! The same messages are the store's on-disk encoding, so a record on disk and
//! a record on the wire are one schema that evolves one way (AIP-180).

#[allow(clippy::all, missing_docs)]
mod generated {
    tonic::include_proto!("lodestone.v1");
    include!(concat!(env!("OUT_DIR"), "/lodestone.v1.RecordService.rs"));
    include!(concat!(env!("OUT_DIR"), "/lodestone.v1.RiskService.rs"));
}

mod convert;
mod encoded;
pub mod json;
mod risk;

pub use convert::*;
pub use encoded::Encoded;
pub use generated::*;
pub use risk::*;

/// The encoded descriptors of the contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lodestone_descriptor.bin"));
