//! The one place where domain errors become gRPC statuses (AIP-193): a code,
//! a message, an `ErrorInfo` whose metadata holds every dynamic part of the
//! message, and a `BadRequest` for validation errors. The match is exhaustive,
//! so a new error cannot reach a client without a decision here.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Error, InvalidReason, RecordKey, Violation};

/// The `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "lodestone";

fn keys(keys: &[RecordKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn status(
    code: Code,
    message: String,
    reason: &str,
    metadata: Vec<(&str, String)>,
    violations: Option<&[Violation]>,
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    if let Some(violations) = violations {
        for v in violations {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
    }
    Status::with_error_details(code, message, details)
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message = error.to_string();
        match error {
            Error::Invalid {
                reason,
                violations,
                cycle,
                ..
            } => {
                let reason = match reason {
                    InvalidReason::InvalidRecord => "INVALID_RECORD",
                    InvalidReason::UnknownReference => "UNKNOWN_REFERENCE",
                    InvalidReason::CycleDetected => "CYCLE_DETECTED",
                };
                let mut metadata = vec![("violationCount", violations.len().to_string())];
                if !cycle.is_empty() {
                    metadata.push(("cycle", cycle.join(" -> ")));
                }
                status(
                    Code::InvalidArgument,
                    message,
                    reason,
                    metadata,
                    Some(&violations),
                )
            }
            Error::InvalidArgument { violations } => status(
                Code::InvalidArgument,
                message,
                "INVALID_ARGUMENT",
                vec![("violationCount", violations.len().to_string())],
                Some(&violations),
            ),
            Error::TooManyRecords { count, limit } => status(
                Code::InvalidArgument,
                message.clone(),
                "TOO_MANY_RECORDS",
                vec![("count", count.to_string()), ("limit", limit.to_string())],
                Some(&[Violation::new("records", message)]),
            ),
            Error::NotFound { missing } => {
                let mut metadata = vec![("records", keys(&missing))];
                if let [only] = missing.as_slice() {
                    metadata.push(("kind", only.kind.to_string()));
                    metadata.push(("id", only.id.clone()));
                }
                status(Code::NotFound, message, "NOT_FOUND", metadata, None)
            }
            Error::NoSuchPlant { plant } => status(
                Code::NotFound,
                message,
                "NOT_FOUND",
                vec![("plant", plant)],
                None,
            ),
            Error::StillReferenced { target, referrers } => status(
                Code::FailedPrecondition,
                message,
                "STILL_REFERENCED",
                vec![
                    ("kind", target.kind.to_string()),
                    ("id", target.id),
                    ("referrers", keys(&referrers)),
                ],
                None,
            ),
            Error::RevisionMismatch {
                key,
                expected,
                actual,
            } => status(
                Code::Aborted,
                message,
                "REVISION_MISMATCH",
                vec![
                    ("kind", key.kind.to_string()),
                    ("id", key.id),
                    ("expectedRevision", expected.to_string()),
                    (
                        "actualRevision",
                        actual.map_or_else(String::new, |r| r.to_string()),
                    ),
                ],
                None,
            ),
            Error::PageTokenExpired { revision } => status(
                Code::FailedPrecondition,
                message,
                "PAGE_TOKEN_EXPIRED",
                vec![("revision", revision.to_string())],
                None,
            ),
            Error::SequenceCompacted { requested, oldest } => status(
                Code::OutOfRange,
                message,
                "SEQUENCE_COMPACTED",
                vec![
                    ("oldestSequence", oldest.to_string()),
                    ("afterSequence", requested.to_string()),
                ],
                None,
            ),
            Error::SequenceAhead { requested, head } => status(
                Code::OutOfRange,
                message,
                "SEQUENCE_AHEAD",
                vec![
                    ("headSequence", head.to_string()),
                    ("afterSequence", requested.to_string()),
                ],
                None,
            ),
            Error::Storage(detail) => {
                tracing::error!(%detail, "storage failure");
                status(
                    Code::Unavailable,
                    message,
                    "STORAGE_UNAVAILABLE",
                    vec![("detail", detail)],
                    None,
                )
            }
            Error::ShuttingDown => status(
                Code::Unavailable,
                message,
                "SHUTTING_DOWN",
                Vec::new(),
                None,
            ),
        }
    }
}

/// No token, or one the server does not know.
pub fn unauthenticated(message: &str) -> Status {
    status(
        Code::Unauthenticated,
        message.to_string(),
        "UNAUTHENTICATED",
        Vec::new(),
        None,
    )
}

/// A known client calling a method its role does not allow.
pub fn permission_denied(client: &str, role: crate::auth::Role, method: &str) -> Status {
    status(
        Code::PermissionDenied,
        format!("client {client:?} is a {role} and may not call {method}"),
        "PERMISSION_DENIED",
        vec![
            ("client", client.to_string()),
            ("role", role.to_string()),
            ("method", method.to_string()),
        ],
        None,
    )
}

/// The server is serving as many requests as it may; this one is shed
/// rather than queued, so that a client can back off and retry.
pub fn overloaded(limit: usize) -> Status {
    status(
        Code::ResourceExhausted,
        format!("the server is serving its limit of {limit} requests at once; retry with backoff"),
        "OVERLOADED",
        vec![("limit", limit.to_string())],
        None,
    )
}

/// As many licence streams are open as the server allows.
pub fn too_many_streams(limit: usize) -> Status {
    status(
        Code::ResourceExhausted,
        format!("the server has its limit of {limit} licence streams open; retry with backoff"),
        "TOO_MANY_STREAMS",
        vec![("limit", limit.to_string())],
        None,
    )
}
