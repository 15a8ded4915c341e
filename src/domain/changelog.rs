//! The licence change log's entries: what changed on a licence, and when.

use std::time::SystemTime;

use super::record::{License, LicenseStatus, Record};
use super::write::Change;

/// What a change did to a licence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One entry of the licence change log.
#[derive(Clone, Debug, PartialEq)]
pub struct LicenseChange {
    /// Position in the log: 1 for the first change ever, with no gaps.
    pub sequence: u64,
    /// Store revision of the write that made the change.
    pub revision: u64,
    pub kind: ChangeKind,
    /// The licence after the change (before it, for a delete).
    pub license: License,
    /// The status before the change; `Unspecified` for a create.
    pub previous_status: LicenseStatus,
    pub recorded_at: SystemTime,
    /// The authenticated client whose request made the change; empty when
    /// the server runs without authentication.
    pub client: String,
}

/// The log entry `change` makes, if it touches a licence, at `sequence`
/// and `revision`.
pub fn license_change(
    change: &Change,
    sequence: u64,
    revision: u64,
    recorded_at: SystemTime,
    client: &str,
) -> Option<LicenseChange> {
    let (kind, license, previous_status) = match (&change.old, &change.new) {
        (None, Some(Record::License(l))) => (ChangeKind::Created, l, LicenseStatus::Unspecified),
        (Some(Record::License(o)), Some(Record::License(l))) => (ChangeKind::Updated, l, o.status),
        (Some(Record::License(o)), None) => (ChangeKind::Deleted, o, o.status),
        _ => return None,
    };
    Some(LicenseChange {
        sequence,
        revision,
        kind,
        license: license.clone(),
        previous_status,
        recorded_at,
        client: client.to_string(),
    })
}
