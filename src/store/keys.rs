//! Key layouts. Every key sorts the way it is scanned: big-endian integers,
//! identifiers as their bytes, and `0x00` after a variable-length part, which
//! no identifier contains, so that a shorter id sorts before its extensions.
//!
//! The `index` tree holds four families of entries, each with an empty value:
//!
//! | prefix | layout | answers |
//! |---|---|---|
//! | `r` | `r` target-kind target-id `0` referrer-kind referrer-id | who refers to a record; components by supplier or material; licences by supplier or material |
//! | `s` | `s` status license-id | licences by status |
//! | `p` | `p` plant `0` line-id | lines by plant |
//! | `c` | `c` country `0` supplier-id | suppliers by country |

use crate::domain::record::{Kind, LicenseStatus, Record, RecordKey};

const REFERENCE: u8 = b'r';
const STATUS: u8 = b's';
const PLANT: u8 = b'p';
const COUNTRY: u8 = b'c';
const SEPARATOR: u8 = 0;

/// The prefix of every `r` entry that points at `target` from records of `referrer_kind`.
pub fn referrers_prefix(target: &RecordKey, referrer_kind: Option<Kind>) -> Vec<u8> {
    let mut key = Vec::with_capacity(target.id.len() + 4);
    key.push(REFERENCE);
    key.push(target.kind as u8);
    key.extend_from_slice(target.id.as_bytes());
    key.push(SEPARATOR);
    if let Some(kind) = referrer_kind {
        key.push(kind as u8);
    }
    key
}

fn reference(target: &RecordKey, referrer: &RecordKey) -> Vec<u8> {
    let mut key = referrers_prefix(target, Some(referrer.kind));
    key.extend_from_slice(referrer.id.as_bytes());
    key
}

/// Reads the referrer back from an `r` entry found under `referrers_prefix(target, None)`.
pub fn referrer_of(entry: &[u8], prefix_len: usize) -> Option<RecordKey> {
    let rest = entry.get(prefix_len..)?;
    let (&kind, id) = rest.split_first()?;
    Some(RecordKey::new(
        Kind::from_byte(kind)?,
        String::from_utf8(id.to_vec()).ok()?,
    ))
}

pub fn status_prefix(status: LicenseStatus) -> Vec<u8> {
    vec![STATUS, status as u8]
}

pub fn plant_prefix(plant: &str) -> Vec<u8> {
    let mut key = vec![PLANT];
    key.extend_from_slice(plant.as_bytes());
    key.push(SEPARATOR);
    key
}

pub fn country_prefix(country: &str) -> Vec<u8> {
    let mut key = vec![COUNTRY];
    key.extend_from_slice(country.as_bytes());
    key.push(SEPARATOR);
    key
}

fn with_id(mut prefix: Vec<u8>, id: &str) -> Vec<u8> {
    prefix.extend_from_slice(id.as_bytes());
    prefix
}

/// Every index entry that `record` owns.
pub fn index_entries(record: &Record) -> Vec<Vec<u8>> {
    let me = record.key();
    let mut entries: Vec<Vec<u8>> = record
        .references()
        .iter()
        .map(|r| reference(&r.target, &me))
        .collect();
    match record {
        Record::Supplier(s) => entries.push(with_id(country_prefix(&s.country), &s.id)),
        Record::Line(l) => entries.push(with_id(plant_prefix(&l.plant), &l.id)),
        Record::License(l) => entries.push(with_id(status_prefix(l.status), &l.id)),
        Record::Material(_) | Record::Component(_) => {}
    }
    entries
}

pub fn sequence(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn u64_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{Component, Source};

    #[test]
    fn a_shorter_id_sorts_before_its_extensions_and_prefixes_do_not_collide() {
        let a = reference(
            &RecordKey::new(Kind::Supplier, "AB"),
            &RecordKey::new(Kind::Component, "X"),
        );
        let b = reference(
            &RecordKey::new(Kind::Supplier, "ABC"),
            &RecordKey::new(Kind::Component, "X"),
        );
        assert!(a < b);
        // Scanning the referrers of "AB" never finds those of "ABC".
        let prefix = referrers_prefix(&RecordKey::new(Kind::Supplier, "AB"), None);
        assert!(a.starts_with(&prefix));
        assert!(!b.starts_with(&prefix));
    }

    #[test]
    fn referrers_read_back_from_entries() {
        let target = RecordKey::new(Kind::Supplier, "S1");
        let component = Record::Component(Component {
            id: "C-9".into(),
            sources: vec![Source {
                supplier_id: "S1".into(),
                share: 1.0,
            }],
            ..Default::default()
        });
        let entries = index_entries(&component);
        let prefix = referrers_prefix(&target, None);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            referrer_of(&entries[0], prefix.len()),
            Some(RecordKey::new(Kind::Component, "C-9"))
        );
    }

    #[test]
    fn sequences_sort_numerically() {
        assert!(sequence(255) < sequence(256));
        assert_eq!(u64_value(&sequence(42)), Some(42));
    }
}
