//! The licence change log's entries: what changed on a licence, and when.

use std::time::SystemTime;

use super::record::{License, LicenseStatus};

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
