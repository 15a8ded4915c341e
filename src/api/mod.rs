//! The gRPC surface: tonic services that translate between protobuf and the
//! domain, and the one mapping from domain errors to statuses.

mod page;
mod records;
mod risk;
mod status;
mod stream;

pub use records::RecordApi;
pub use risk::RiskApi;
pub use status::ERROR_DOMAIN;
pub use stream::{StreamGauges, QUEUE as STREAM_QUEUE};
