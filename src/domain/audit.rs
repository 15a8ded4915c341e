//! The audit trail: for every committed write, who asked, when, by which
//! request, and which records it changed. One entry per revision, written
//! in the same commit as the records, so that the trail never names a write
//! that did not happen nor misses one that did.

use std::time::SystemTime;

use super::record::RecordKey;
use super::write::Change;

/// Most records an entry names; a larger write is counted whole and named
/// in part (its first records, in the order the write listed them), so that
/// an import of a million records does not make an entry of megabytes.
pub const MAX_AUDITED_RECORDS: usize = 1000;

/// `at` to the microsecond, the precision both stores keep.
pub fn micros(at: SystemTime) -> SystemTime {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_micros(since.as_micros().try_into().unwrap_or(u64::MAX))
        }
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Who made a write, as the server authenticated them; every field is empty
/// when the server authenticates no one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Author {
    /// The token file's name for the caller, or a provider token's subject.
    pub name: String,
    /// A provider token's subject (`sub`); empty for a token file's caller.
    pub subject: String,
    /// A provider token's client (`client_id` or `azp`), when it names one.
    pub client_id: String,
}

/// What kind of request made a write: the API method's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    UpsertRecords,
    DeleteRecords,
    ImportRecords,
    UpdateLicenseStatus,
    /// The demonstration network loaded at start (`serve --demo`).
    Demonstration,
}

impl Request {
    pub fn name(self) -> &'static str {
        match self {
            Request::UpsertRecords => "UpsertRecords",
            Request::DeleteRecords => "DeleteRecords",
            Request::ImportRecords => "ImportRecords",
            Request::UpdateLicenseStatus => "UpdateLicenseStatus",
            Request::Demonstration => "Demonstration",
        }
    }
}

/// Who asks for a write, and by which request: what the writer path carries
/// from the API to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub author: Author,
    pub request: Request,
}

impl Attribution {
    /// A write nobody authenticated (tests, the demonstration network).
    pub fn anonymous(request: Request) -> Attribution {
        Attribution {
            author: Author::default(),
            request,
        }
    }
}

/// One committed write, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// The store revision the write committed at (one entry per revision).
    pub revision: u64,
    /// When it committed; never earlier than the entry before it.
    pub recorded_at: SystemTime,
    pub author: Author,
    /// The request's name (see [`Request::name`]).
    pub request: String,
    /// How many records the write created, updated and deleted.
    pub created_count: u64,
    pub updated_count: u64,
    pub deleted_count: u64,
    /// The records it created, updated and deleted: all of them, or the
    /// first [`MAX_AUDITED_RECORDS`] of the three together.
    pub created: Vec<RecordKey>,
    pub updated: Vec<RecordKey>,
    pub deleted: Vec<RecordKey>,
}

impl AuditEntry {
    /// The entry of the write `changes` at `revision`.
    pub fn of(
        changes: &[Change],
        revision: u64,
        recorded_at: SystemTime,
        by: &Attribution,
    ) -> AuditEntry {
        let mut entry = AuditEntry {
            revision,
            recorded_at,
            author: by.author.clone(),
            request: by.request.name().to_string(),
            created_count: 0,
            updated_count: 0,
            deleted_count: 0,
            created: Vec::new(),
            updated: Vec::new(),
            deleted: Vec::new(),
        };
        for change in changes {
            let named = entry.created.len() + entry.updated.len() + entry.deleted.len();
            let (count, keys) = match (&change.old, &change.new) {
                (None, Some(_)) => (&mut entry.created_count, &mut entry.created),
                (Some(_), Some(_)) => (&mut entry.updated_count, &mut entry.updated),
                (Some(_), None) => (&mut entry.deleted_count, &mut entry.deleted),
                (None, None) => continue,
            };
            *count += 1;
            if named < MAX_AUDITED_RECORDS {
                keys.push(change.key());
            }
        }
        entry
    }

    /// Records the write changed that the entry does not name.
    pub fn unnamed(&self) -> u64 {
        let named = self.created.len() + self.updated.len() + self.deleted.len();
        self.created_count + self.updated_count + self.deleted_count - named as u64
    }
}

/// Which entries a listing asks for: revisions after `after_revision`,
/// recorded in `[from, before)` where those are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub after_revision: u64,
    pub from: Option<SystemTime>,
    pub before: Option<SystemTime>,
}

impl AuditQuery {
    pub fn admits(&self, entry: &AuditEntry) -> bool {
        entry.revision > self.after_revision
            && self.from.is_none_or(|from| entry.recorded_at >= from)
            && self.before.is_none_or(|before| entry.recorded_at < before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{Kind, Record, Supplier};

    fn supplier(id: &str) -> Record {
        Record::Supplier(Supplier {
            id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn an_entry_counts_every_change_and_names_at_most_the_limit() {
        let mut changes = vec![
            Change {
                old: Some(supplier("U")),
                new: Some(supplier("U")),
            },
            Change {
                old: Some(supplier("D")),
                new: None,
            },
        ];
        changes.extend((0..MAX_AUDITED_RECORDS + 5).map(|i| Change {
            old: None,
            new: Some(supplier(&format!("N{i:05}"))),
        }));
        let by = Attribution {
            author: Author {
                name: "erp".into(),
                ..Author::default()
            },
            request: Request::ImportRecords,
        };
        let entry = AuditEntry::of(&changes, 7, SystemTime::UNIX_EPOCH, &by);
        assert_eq!(entry.revision, 7);
        assert_eq!(entry.request, "ImportRecords");
        assert_eq!(entry.author.name, "erp");
        assert_eq!(
            (
                entry.created_count,
                entry.updated_count,
                entry.deleted_count
            ),
            (MAX_AUDITED_RECORDS as u64 + 5, 1, 1)
        );
        assert_eq!(entry.updated, [RecordKey::new(Kind::Supplier, "U")]);
        assert_eq!(entry.deleted, [RecordKey::new(Kind::Supplier, "D")]);
        assert_eq!(entry.created.len(), MAX_AUDITED_RECORDS - 2);
        assert_eq!(entry.created[0], RecordKey::new(Kind::Supplier, "N00000"));
        assert_eq!(entry.unnamed(), 7);
    }

    #[test]
    fn a_query_admits_revisions_after_and_times_in_its_range() {
        let at = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let entry = AuditEntry::of(
            &[],
            5,
            at(100),
            &Attribution::anonymous(Request::DeleteRecords),
        );
        assert!(AuditQuery::default().admits(&entry));
        assert!(!AuditQuery {
            after_revision: 5,
            ..Default::default()
        }
        .admits(&entry));
        let range = |from, before| AuditQuery {
            after_revision: 0,
            from: Some(at(from)),
            before: Some(at(before)),
        };
        assert!(range(100, 101).admits(&entry));
        assert!(!range(101, 200).admits(&entry));
        assert!(!range(0, 100).admits(&entry), "the end is exclusive");
    }
}
