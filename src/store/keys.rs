//! Key layouts. Every key sorts the way it is scanned: record ids as their
//! bytes (one tree per kind), log sequences and counters as big-endian
//! integers, so that the log reads in sequence order.

pub(super) fn sequence(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn u64_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_sort_numerically() {
        assert!(sequence(255) < sequence(256));
        assert_eq!(u64_value(&sequence(42)), Some(42));
    }
}
