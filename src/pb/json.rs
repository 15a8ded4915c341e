//! Protobuf's canonical JSON mapping for the contract's messages, through the
//! compiled descriptors (the same ones reflection serves).

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use super::FILE_DESCRIPTOR_SET;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the compiled descriptor set is valid")
    })
}

/// Parses `json` as the message `full_name` (e.g. `lodestone.v1.Record`).
/// Field names may be the proto names or their lowerCamelCase JSON names.
pub fn from_json<M: Message + Default>(full_name: &str, json: &str) -> Result<M, String> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("no message {full_name} in the contract"))?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let dynamic =
        DynamicMessage::deserialize(descriptor, &mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    dynamic.transcode_to::<M>().map_err(|e| e.to_string())
}

/// Writes `message` (of type `full_name`) as canonical JSON with the proto
/// field names, omitting default values.
pub fn to_json<M: Message>(full_name: &str, message: &M) -> Result<String, String> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("no message {full_name} in the contract"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| e.to_string())?;
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(
            &mut out,
            &SerializeOptions::new().use_proto_field_name(true),
        )
        .map_err(|e| e.to_string())?;
    String::from_utf8(out.into_inner()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn records_round_trip_through_json() {
        let json = r#"{"license": {"id": "L1", "supplier_id": "S", "material": "DY",
            "status": "LICENSE_STATUS_PENDING", "quantity_kg": 40, "valid_until": "2026-01-31"}}"#;
        let record: pb::Record = from_json("lodestone.v1.Record", json).unwrap();
        let Some(pb::record::Record::License(l)) = &record.record else {
            panic!()
        };
        assert_eq!(l.status, pb::LicenseStatus::Pending as i32);
        assert_eq!(l.quantity_kg, 40.0);
        let back = to_json("lodestone.v1.Record", &record).unwrap();
        let again: pb::Record = from_json("lodestone.v1.Record", &back).unwrap();
        assert_eq!(again, record);
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(from_json::<pb::Record>("lodestone.v1.Record", r#"{"nope": 1}"#).is_err());
        assert!(from_json::<pb::Record>("lodestone.v1.Record", "{} trailing").is_err());
    }
}
