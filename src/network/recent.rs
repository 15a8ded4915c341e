//! The newest licence log entries, kept in memory. Every stream following
//! the head reads them here rather than each from the store: a thousand
//! subscribers of a replica would otherwise each ask the database for every
//! change. What it holds is contiguous; what it does not hold, a stream
//! reads from the store.

use std::collections::VecDeque;

use parking_lot::RwLock;

use crate::domain::changelog::LicenseChange;

pub(super) struct RecentLog {
    entries: RwLock<VecDeque<LicenseChange>>,
    capacity: usize,
}

impl RecentLog {
    pub(super) fn new(capacity: usize) -> RecentLog {
        RecentLog {
            entries: RwLock::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    /// Appends entries that follow on from the newest held; entries that
    /// do not (a gap) start the memory afresh.
    pub(super) fn append(&self, changes: impl IntoIterator<Item = LicenseChange>) {
        let mut entries = self.entries.write();
        for change in changes {
            match entries.back() {
                Some(last) if change.sequence <= last.sequence => continue,
                Some(last) if change.sequence != last.sequence + 1 => entries.clear(),
                _ => {}
            }
            if entries.len() == self.capacity {
                entries.pop_front();
            }
            entries.push_back(change);
        }
    }

    /// Up to `limit` entries after sequence `after`, if this holds the next
    /// one (`None`: read the store).
    pub(super) fn read(&self, after: u64, limit: usize) -> Option<Vec<LicenseChange>> {
        let entries = self.entries.read();
        let first = entries.front()?.sequence;
        if after < first.saturating_sub(1) || after >= entries.back()?.sequence {
            return None;
        }
        let start = (after + 1 - first) as usize;
        Some(entries.iter().skip(start).take(limit).cloned().collect())
    }

    /// Forgets the entries up to `through` (the log was compacted).
    pub(super) fn forget_through(&self, through: u64) {
        let mut entries = self.entries.write();
        while entries.front().is_some_and(|e| e.sequence <= through) {
            entries.pop_front();
        }
    }

    /// Forgets everything (the store was opened again).
    pub(super) fn clear(&self) {
        self.entries.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::changelog::ChangeKind;
    use crate::domain::record::{License, LicenseStatus};

    fn entry(sequence: u64) -> LicenseChange {
        LicenseChange {
            sequence,
            revision: sequence,
            kind: ChangeKind::Created,
            license: License::default(),
            previous_status: LicenseStatus::Unspecified,
            recorded_at: std::time::SystemTime::UNIX_EPOCH,
            client: String::new(),
        }
    }

    fn sequences(read: Option<Vec<LicenseChange>>) -> Option<Vec<u64>> {
        read.map(|r| r.into_iter().map(|c| c.sequence).collect())
    }

    #[test]
    fn it_answers_only_what_it_holds_whole() {
        let recent = RecentLog::new(4);
        assert_eq!(sequences(recent.read(0, 10)), None);
        recent.append((1..=6).map(entry));
        // Holds 3..=6.
        assert_eq!(sequences(recent.read(2, 10)), Some(vec![3, 4, 5, 6]));
        assert_eq!(sequences(recent.read(4, 1)), Some(vec![5]));
        assert_eq!(sequences(recent.read(1, 10)), None, "2 is gone");
        assert_eq!(
            sequences(recent.read(6, 10)),
            None,
            "nothing after the newest"
        );
        // A gap starts afresh; repeats are ignored.
        recent.append([entry(6), entry(9)]);
        assert_eq!(sequences(recent.read(8, 10)), Some(vec![9]));
        assert_eq!(sequences(recent.read(5, 10)), None);
        recent.append([entry(10), entry(11)]);
        recent.forget_through(10);
        assert_eq!(sequences(recent.read(9, 10)), None);
        assert_eq!(sequences(recent.read(10, 10)), Some(vec![11]));
    }
}
