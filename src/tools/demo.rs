//! The demonstration network `lodestone serve --demo` loads into an empty
//! store: a European carmaker in the 2025 rare-earth licensing crisis, with EV,
//! hybrid and combustion lines at three plants, magnet makers in China, Japan
//! and Germany, and licences approved, pending and rejected. The README tells
//! what it answers, and `tests/readme.rs` holds it to that.

use std::sync::Arc;

use crate::domain::audit::{Attribution, Request};
use crate::domain::write::Revisions;
use crate::domain::write::{Incoming, Origin};
use crate::domain::Error;
use crate::network::{Apply, Network, Upsert};
use crate::pb::{self, json};

/// The day the demonstration network tells its story as of.
pub(crate) const AS_OF: &str = "2025-06-02";

/// The network, as an `UpsertRecordsRequest` in protobuf JSON.
const NETWORK_JSON: &str = include_str!("../../demo/network.json");

/// The demonstration records.
pub(crate) fn records() -> Vec<pb::Record> {
    json::from_json::<pb::UpsertRecordsRequest>("lodestone.v1.UpsertRecordsRequest", NETWORK_JSON)
        .expect("the built-in demonstration network parses")
        .records
}

/// Loads the demonstration network when the store holds no record yet.
/// Returns whether it was loaded.
pub(crate) async fn load_if_empty(network: &Arc<Network>) -> Result<bool, Error> {
    if network.view().revision != 0 {
        return Ok(false);
    }
    let mut malformed = Vec::new();
    let incoming = records()
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            pb::record_from_pb(r, &format!("records[{i}]"), &mut malformed).map(|record| Incoming {
                origin: Origin::Records(i),
                record,
            })
        })
        .collect();
    network
        .upsert(
            Upsert {
                records: incoming,
                malformed,
                revisions: Revisions::Ignored,
                apply: Apply::Commit,
            },
            &Attribution::anonymous(Request::Demonstration),
        )
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_network_parses() {
        assert!(super::records().len() > 60);
    }
}
