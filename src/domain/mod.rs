//! The domain: the records of a supply network, the rules they keep, and how a
//! write request becomes a set of changes. Plain Rust: no protobuf, gRPC or
//! storage types appear here, so that all of it can be tested alone.

pub mod audit;
pub mod changelog;
pub mod date;
pub mod error;
pub mod record;
pub mod risk;
pub mod validate;
pub mod write;

pub use error::{Error, InvalidReason, Violation};
pub use record::{Kind, Record, RecordKey};
