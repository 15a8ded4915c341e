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

/// Bounds on what one status carries. Statuses travel in HTTP/2 headers,
/// which peers cap (grpc-java at 8 KiB by default): a refused import of a
/// thousand-component cycle must not become a protocol error. The first
/// violations are listed; `violationCount` says how many there were.
const MAX_MESSAGE: usize = 512;
const MAX_METADATA_VALUE: usize = 256;
const MAX_DESCRIPTION: usize = 240;
const MAX_VIOLATIONS: usize = 50;
const MAX_VIOLATION_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn status(
    code: Code,
    message: String,
    reason: &str,
    metadata: Vec<(&str, String)>,
    violations: Option<&[Violation]>,
) -> Status {
    let mut metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(k, v)| (k.to_string(), bounded(v, MAX_METADATA_VALUE)))
        .collect();
    let mut shown = Vec::new();
    if let Some(violations) = violations {
        let mut bytes = 0;
        for v in violations.iter().take(MAX_VIOLATIONS) {
            let description = bounded(v.description.clone(), MAX_DESCRIPTION);
            bytes += v.field.len() + description.len();
            if bytes > MAX_VIOLATION_BYTES && !shown.is_empty() {
                break;
            }
            shown.push((bounded(v.field.clone(), MAX_DESCRIPTION), description));
        }
        if shown.len() < violations.len() {
            metadata.insert("violationsShown".into(), shown.len().to_string());
        }
    }
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    for (field, description) in shown {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(code, bounded(message, MAX_MESSAGE), details)
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
            Error::DatabaseUnavailable(detail) => {
                tracing::warn!(%detail, "the database does not answer");
                status(
                    Code::Unavailable,
                    message,
                    "DATABASE_UNAVAILABLE",
                    vec![("detail", detail)],
                    None,
                )
            }
            Error::StoreFailed { detail } => status(
                Code::Unavailable,
                message,
                "STORAGE_FAILED",
                vec![("detail", detail)],
                None,
            ),
            Error::ShuttingDown => status(
                Code::Unavailable,
                message,
                "SHUTTING_DOWN",
                Vec::new(),
                None,
            ),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                status(Code::Internal, message, "INTERNAL", Vec::new(), None)
            }
        }
    }
}

/// No token, or one the server does not know.
pub(crate) fn unauthenticated(message: &str) -> Status {
    status(
        Code::Unauthenticated,
        message.to_string(),
        "UNAUTHENTICATED",
        Vec::new(),
        None,
    )
}

/// A known client calling a method its role does not allow.
pub(crate) fn permission_denied(
    client: &str,
    role: crate::transport::auth::Role,
    method: &str,
) -> Status {
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

/// A provider token that is genuine but gives no role of this service.
pub(crate) fn permission_denied_because(message: &str) -> Status {
    status(
        Code::PermissionDenied,
        message.to_string(),
        "PERMISSION_DENIED",
        Vec::new(),
        None,
    )
}

/// A plant-limited caller asking about, or reaching, another plant.
pub(crate) fn plant_refused(
    client: &crate::transport::auth::Client,
    refusal: &crate::transport::auth::PlantRefusal,
) -> Status {
    use crate::transport::auth::PlantRefusal;
    let plants = client.limited_to().unwrap_or_default().join(", ");
    let (message, plant) = match refusal {
        PlantRefusal::Other(plant) => (
            format!(
                "client {:?} may see the plants {plants} only, and this question is about or reaches plant {plant:?}",
                client.name
            ),
            plant.clone(),
        ),
        PlantRefusal::Unnamed => (
            format!(
                "client {:?} may see the plants {plants} only: name one of them as the question's plant",
                client.name
            ),
            String::new(),
        ),
        PlantRefusal::Everything => (
            format!(
                "client {:?} may see the plants {plants} only, and this call answers about every plant",
                client.name
            ),
            String::new(),
        ),
    };
    status(
        Code::PermissionDenied,
        message,
        "PLANT_NOT_PERMITTED",
        vec![
            ("client", client.name.clone()),
            ("plant", plant),
            ("permittedPlants", plants),
        ],
        None,
    )
}

/// A token limited to some plants asking to write.
pub(crate) fn plant_scoped_write(client: &str, method: &str) -> Status {
    status(
        Code::PermissionDenied,
        format!("client {client:?} is limited to some plants and may not call {method}: such tokens only read"),
        "PERMISSION_DENIED",
        vec![("client", client.to_string()), ("method", method.to_string())],
        None,
    )
}

/// A token signed by a key the server has not fetched, and the identity
/// provider does not answer: the token may be good, so retry.
pub(crate) fn identity_provider_unavailable(issuer: &str, message: &str) -> Status {
    status(
        Code::Unavailable,
        format!("{message}; retry with backoff"),
        "IDENTITY_PROVIDER_UNAVAILABLE",
        vec![("issuer", issuer.to_string())],
        None,
    )
}

/// The server is serving as many requests as it may; this one is shed
/// rather than queued, so that a client can back off and retry.
pub(crate) fn overloaded(limit: usize) -> Status {
    status(
        Code::ResourceExhausted,
        format!("the server is serving its limit of {limit} requests at once; retry with backoff"),
        "OVERLOADED",
        vec![("limit", limit.to_string())],
        None,
    )
}

/// As many licence streams are open as the server allows.
pub(crate) fn too_many_streams(limit: usize) -> Status {
    status(
        Code::ResourceExhausted,
        format!("the server has its limit of {limit} streams (licence streams and watches) open; retry with backoff"),
        "TOO_MANY_STREAMS",
        vec![("limit", limit.to_string())],
        None,
    )
}

/// A read that asked for a revision (`x-lodestone-min-revision`) this
/// replica has not applied within the call's deadline.
pub(crate) fn revision_not_applied(requested: u64, applied: u64) -> Status {
    status(
        Code::Unavailable,
        format!(
            "this replica has applied revision {applied}, not yet {requested}, which the call asked for \
             (x-lodestone-min-revision); retry, or ask another replica"
        ),
        "REVISION_NOT_APPLIED",
        vec![
            ("requestedRevision", requested.to_string()),
            ("appliedRevision", applied.to_string()),
        ],
        None,
    )
}

/// A malformed `x-lodestone-min-revision`.
pub(crate) fn bad_min_revision(value: &str) -> Status {
    status(
        Code::InvalidArgument,
        format!("x-lodestone-min-revision must be a revision (a whole number), not {value:?}"),
        "INVALID_ARGUMENT",
        vec![("value", value.to_string())],
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn a_status_stays_small_whatever_it_reports() {
        let violations: Vec<Violation> = (0..10_000)
            .map(|i| Violation::new(format!("records[{i}].supplier.id"), "x".repeat(5000)))
            .collect();
        let status: Status = Error::Invalid {
            reason: InvalidReason::CycleDetected,
            summary: "y".repeat(100_000),
            violations,
            cycle: (0..1000).map(|i| format!("C{i}")).collect(),
        }
        .into();
        assert!(
            status.message().len() <= MAX_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(
            status.details().len() < 6 * 1024,
            "{}",
            status.details().len()
        );
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.metadata["violationCount"], "10000");
        let shown: usize = info.metadata["violationsShown"].parse().unwrap();
        assert_eq!(details.bad_request().unwrap().field_violations.len(), shown);
        assert!(shown >= 1);
        assert!(info.metadata["cycle"].starts_with("C0 -> C1 -> "));
        assert_eq!(bounded("é".repeat(10), 7), "éé…");
    }
}
