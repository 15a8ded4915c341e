//! A message held as its encoding.

use std::fmt;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{
    decode_varint, encode_key, encode_varint, skip_field, DecodeContext, WireType,
};
use prost::{DecodeError, Message};

/// A message of type `M` kept as its protobuf encoding, and written to the
/// wire as it is. A server answers with one where the same large answer is
/// asked for again and again (an exposure kept with its risk answer), so
/// that a warm answer costs a copy of bytes rather than the building and
/// encoding of thousands of fields. On the wire it is exactly `M`.
pub struct Encoded<M> {
    bytes: Bytes,
    message: PhantomData<fn() -> M>,
}

impl<M> Encoded<M> {
    /// Bytes that encode an `M` (kept from `M::encode_to_vec`, or from
    /// [`Encoded::bytes`]).
    pub fn from_bytes(bytes: Bytes) -> Encoded<M> {
        Encoded {
            bytes,
            message: PhantomData,
        }
    }

    /// The encoding.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl<M> Clone for Encoded<M> {
    fn clone(&self) -> Self {
        Encoded::from_bytes(self.bytes.clone())
    }
}

impl<M> Default for Encoded<M> {
    /// The message with every field at its default: no bytes.
    fn default() -> Self {
        Encoded::from_bytes(Bytes::new())
    }
}

impl<M> fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Encoded<{}>({} bytes)",
            std::any::type_name::<M>(),
            self.bytes.len()
        )
    }
}

impl<M> Message for Encoded<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    /// Keeps the field as it arrived, key and value. Groups, which no proto3
    /// message has, are skipped, as `M`'s own decoder skips unknown fields.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let len = match wire_type {
            WireType::StartGroup | WireType::EndGroup => {
                return skip_field(wire_type, tag, buf, ctx);
            }
            WireType::Varint => None,
            WireType::ThirtyTwoBit => Some(4),
            WireType::SixtyFourBit => Some(8),
            WireType::LengthDelimited => Some(decode_varint(buf)?),
        };
        let mut field = BytesMut::new();
        encode_key(tag, wire_type, &mut field);
        match len {
            None => encode_varint(decode_varint(buf)?, &mut field),
            Some(len) => {
                if wire_type == WireType::LengthDelimited {
                    encode_varint(len, &mut field);
                }
                if len > buf.remaining() as u64 {
                    // prost's own check names the error: a length with
                    // nothing after it.
                    let mut truncated = BytesMut::new();
                    encode_varint(len, &mut truncated);
                    return skip_field(WireType::LengthDelimited, tag, &mut truncated, ctx);
                }
                field.put(buf.take(len as usize));
            }
        }
        let mut bytes = BytesMut::from(std::mem::take(&mut self.bytes));
        bytes.put(field);
        self.bytes = bytes.freeze();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn exposure() -> pb::Exposure {
        pb::Exposure {
            as_of: "2025-06-01".into(),
            horizon_days: 90,
            revision: 7,
            lines_in_scope: 2,
            units_per_day: 1234.5,
            pools: vec![pb::PoolCoverage {
                supplier_id: "S1".into(),
                material: "DY".into(),
                required_kg_per_day: 0.25,
                covered_days: 12,
                first_uncovered_date: "2025-06-13".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn is_on_the_wire_the_message_it_encodes() {
        let message = exposure();
        let encoded = Encoded::<pb::Exposure>::from_bytes(message.encode_to_vec().into());
        assert_eq!(encoded.encode_to_vec(), message.encode_to_vec());
        assert_eq!(encoded.encoded_len(), message.encoded_len());
        assert_eq!(
            pb::Exposure::decode(encoded.encode_to_vec().as_slice()).unwrap(),
            message
        );
    }

    #[test]
    fn decoding_keeps_every_field_as_it_came() {
        let message = exposure();
        let wire = message.encode_to_vec();
        let decoded = <Encoded<pb::Exposure> as Message>::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.bytes().as_ref(), wire.as_slice());
        assert_eq!(
            pb::Exposure::decode(decoded.bytes().clone()).unwrap(),
            message
        );
    }

    #[test]
    fn a_truncated_field_is_an_error() {
        let wire = exposure().encode_to_vec();
        for cut in 1..wire.len() {
            let whole = pb::Exposure::decode(&wire[..cut]).is_ok();
            let kept = <Encoded<pb::Exposure> as Message>::decode(&wire[..cut]).is_ok();
            assert_eq!(kept, whole, "cut at {cut}");
        }
    }
}
