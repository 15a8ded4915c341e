//! What can go wrong, in the domain's words. The api layer alone decides how
//! each of these reaches a client (status code, `ErrorInfo`, `BadRequest`).

use super::record::{Kind, RecordKey};

/// One broken rule, located by its path in the request
/// (`records[3].component.sources[0].share`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a write was refused as invalid, from the most to the least basic: a
/// request with any malformed field is `InvalidRecord` whatever else is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InvalidReason {
    InvalidRecord,
    UnknownReference,
    CycleDetected,
}

/// Clone: one failure (a commit that did not go through) answers every
/// write of the batch it ended, each with the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// A write broke the validation rules; nothing of it was stored.
    #[error("{summary}")]
    Invalid {
        reason: InvalidReason,
        summary: String,
        violations: Vec<Violation>,
        /// The component cycle, first id repeated at the end, when the reason
        /// is `CycleDetected`.
        cycle: Vec<String>,
    },
    /// A request argument outside the records themselves is malformed.
    #[error("{}", describe_violations(.violations))]
    InvalidArgument { violations: Vec<Violation> },
    #[error("a request may hold at most {limit} records; this one holds {count}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("{} not found", describe_keys(.missing))]
    NotFound { missing: Vec<RecordKey> },
    #[error("no production line is at plant {plant:?}")]
    NoSuchPlant { plant: String },
    #[error("cannot delete {target}: still referenced by {}", describe_keys(.referrers))]
    StillReferenced {
        target: RecordKey,
        referrers: Vec<RecordKey>,
    },
    #[error(
        "{key} is at revision {}, not {expected}",
        .actual.map_or("(none: it does not exist)".to_string(), |r| r.to_string())
    )]
    RevisionMismatch {
        key: RecordKey,
        expected: u64,
        actual: Option<u64>,
    },
    #[error("the page token is for revision {revision}, whose answers are no longer held; start the listing over")]
    PageTokenExpired { revision: u64 },
    #[error("the licence log no longer holds the events after sequence {requested}; the oldest it holds is {oldest}")]
    SequenceCompacted { requested: u64, oldest: u64 },
    #[error("sequence {requested} is beyond the licence log's head {head}: this server has lost data the client has seen (restored from an old backup?)")]
    SequenceAhead { requested: u64, head: u64 },
    #[error("the store failed: {0}")]
    Storage(String),
    #[error("the store is shutting down")]
    ShuttingDown,
    /// The database behind a replica does not answer: this write was not
    /// made (or its outcome is unknown, if the connection was lost while it
    /// committed). The next write tries again.
    #[error("the database does not answer ({0}); reads go on from this replica, and writes resume once it answers again")]
    DatabaseUnavailable(String),
    /// A fault in the service itself (a bug), confined to one request:
    /// nothing of it was stored, and other requests go on.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed to write earlier; writes are refused until the disk
    /// takes them again.
    #[error("the store cannot write ({detail}); reads go on, and writes resume by themselves once the disk takes writes again (free space, or raise the file size limit)")]
    StoreFailed { detail: String },
}

impl Error {
    pub fn invalid_argument(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument {
            violations: vec![Violation::new(field, description)],
        }
    }

    pub fn not_found(kind: Kind, id: impl Into<String>) -> Self {
        Error::NotFound {
            missing: vec![RecordKey::new(kind, id)],
        }
    }
}

fn describe_violations(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_keys(keys: &[RecordKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
