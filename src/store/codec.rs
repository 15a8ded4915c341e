//! Values on disk: one version byte, then the record's protobuf encoding.
//! The version byte lets a later release migrate values it no longer writes.

use prost::Message;
use std::time::SystemTime;

use crate::domain::audit::AuditEntry;
use crate::domain::changelog::{ChangeKind, LicenseChange};
use crate::domain::record::{LicenseStatus, Record};
use crate::domain::write::Change;
use crate::domain::Error;
use crate::pb;

/// The only value layout so far.
const VERSION_1: u8 = 1;

pub(super) fn encode_record(record: &Record) -> Vec<u8> {
    encode(&pb::record_to_pb(record))
}

pub(super) fn decode_record(bytes: &[u8]) -> Result<Record, Error> {
    let message: pb::Record = decode(bytes)?;
    let mut violations = Vec::new();
    let record = pb::record_from_pb(message, "", &mut violations);
    match record {
        Some(record) if violations.is_empty() => Ok(record),
        _ => Err(Error::Storage(format!(
            "a stored record does not decode: {violations:?}"
        ))),
    }
}

pub(super) fn encode_change(change: &LicenseChange) -> Vec<u8> {
    encode(&pb::license_change_to_pb(change))
}

pub(super) fn decode_change(bytes: &[u8]) -> Result<LicenseChange, Error> {
    let message: pb::LicenseUpdate = decode(bytes)?;
    let mut violations = Vec::new();
    let license = pb::license_from_pb(message.license.unwrap_or_default(), &mut violations);
    let kind = match pb::ChangeKind::try_from(message.kind) {
        Ok(pb::ChangeKind::Created) => ChangeKind::Created,
        Ok(pb::ChangeKind::Updated) => ChangeKind::Updated,
        Ok(pb::ChangeKind::Deleted) => ChangeKind::Deleted,
        _ => {
            return Err(Error::Storage(format!(
                "a stored licence change has kind {}",
                message.kind
            )))
        }
    };
    if !violations.is_empty() {
        return Err(Error::Storage(format!(
            "a stored licence change does not decode: {violations:?}"
        )));
    }
    let recorded_at = message
        .recorded_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(LicenseChange {
        sequence: message.sequence,
        revision: message.revision,
        kind,
        license,
        previous_status: LicenseStatus::from_number(message.previous_status),
        recorded_at,
        client: message.client,
    })
}

pub(super) fn encode_audit(entry: &AuditEntry) -> Vec<u8> {
    encode(&pb::audit_entry_to_pb(entry))
}

pub(super) fn decode_audit(bytes: &[u8]) -> Result<AuditEntry, Error> {
    let message: pb::AuditEntry = decode(bytes)?;
    let revision = message.revision;
    pb::audit_entry_from_pb(message).ok_or_else(|| {
        Error::Storage(format!(
            "the audit entry of revision {revision} does not decode"
        ))
    })
}

/// A part of one revision's change set, as the change feed stores it: the
/// version byte, then per change a tag (1: stored, 2: removed) and the
/// record (as stored, or as it was), length-delimited.
pub(super) fn encode_feed(changes: &[Change]) -> Vec<u8> {
    let mut bytes = vec![VERSION_1];
    for change in changes {
        let (tag, record) = match (&change.new, &change.old) {
            (Some(new), _) => (FEED_STORED, new),
            (None, Some(old)) => (FEED_REMOVED, old),
            (None, None) => continue,
        };
        bytes.push(tag);
        pb::record_to_pb(record)
            .encode_length_delimited(&mut bytes)
            .expect("a Vec grows to fit any message");
    }
    bytes
}

pub(super) fn decode_feed(bytes: &[u8]) -> Result<Vec<Change>, Error> {
    let broken =
        |what: String| Error::Storage(format!("a change feed entry does not decode: {what}"));
    let mut rest = match bytes.split_first() {
        Some((&VERSION_1, rest)) => rest,
        Some((version, _)) => return Err(broken(format!("layout version {version}"))),
        None => return Err(broken("it is empty".into())),
    };
    let mut changes = Vec::new();
    while let Some((&tag, body)) = rest.split_first() {
        rest = body;
        let message =
            pb::Record::decode_length_delimited(&mut rest).map_err(|e| broken(e.to_string()))?;
        let mut violations = Vec::new();
        let record = pb::record_from_pb(message, "", &mut violations)
            .filter(|_| violations.is_empty())
            .ok_or_else(|| broken(format!("{violations:?}")))?;
        changes.push(match tag {
            FEED_STORED => Change {
                old: None,
                new: Some(record),
            },
            FEED_REMOVED => Change {
                old: Some(record),
                new: None,
            },
            other => return Err(broken(format!("tag {other}"))),
        });
    }
    Ok(changes)
}

const FEED_STORED: u8 = 1;
const FEED_REMOVED: u8 = 2;

fn encode(message: &impl Message) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(VERSION_1);
    message
        .encode(&mut bytes)
        .expect("a Vec grows to fit any message");
    bytes
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, Error> {
    match bytes.split_first() {
        Some((&VERSION_1, body)) => M::decode(body)
            .map_err(|e| Error::Storage(format!("a stored value does not decode: {e}"))),
        Some((version, _)) => Err(Error::Storage(format!(
            "a stored value has layout version {version}, which this release does not know"
        ))),
        None => Err(Error::Storage("a stored value is empty".into())),
    }
}
