//! How outbox records are laid out in sled: several records under one key, so that queueing
//! and delivering a stream costs one tree write per batch instead of two per record.
//!
//! A batch value is `BATCH_TAG, count: u32`, then per record `seq: u64, queued_at: u64,
//! length: u32, record`, in sequence order; its key is the first record's sequence number.
//! Values written before batching held one record, `queued_at: u64, record`, under the
//! record's own sequence number; their first byte is 0 (a millisecond clock needs 41 bits),
//! so they read as batches of one.

/// First byte of a batch value; never the first byte of a single-record value.
const BATCH_TAG: u8 = 0xB1;
const SINGLE_HEADER: usize = 8;
const RECORD_HEADER: usize = 8 + 8 + 4;

/// One record in a batch value, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub queued_at: u64,
    pub record: &'a [u8],
}

/// Encodes records, given in sequence order, as one batch value.
pub fn encode<'a>(records: impl ExactSizeIterator<Item = RecordRef<'a>>) -> Vec<u8> {
    let mut value = Vec::with_capacity(5 + records.len() * (RECORD_HEADER + 64));
    value.push(BATCH_TAG);
    value.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        value.extend_from_slice(&record.seq.to_be_bytes());
        value.extend_from_slice(&record.queued_at.to_be_bytes());
        value.extend_from_slice(&(record.record.len() as u32).to_be_bytes());
        value.extend_from_slice(record.record);
    }
    value
}

/// The records of the value stored under `key`, or `None` if the value is damaged.
pub fn decode<'a>(key: &[u8], value: &'a [u8]) -> Option<Vec<RecordRef<'a>>> {
    match value.first() {
        Some(&BATCH_TAG) => decode_batch(&value[1..]),
        Some(_) => {
            let seq = u64::from_be_bytes(key.try_into().ok()?);
            let (queued_at, record) = value.split_first_chunk::<SINGLE_HEADER>()?;
            Some(vec![RecordRef {
                seq,
                queued_at: u64::from_be_bytes(*queued_at),
                record,
            }])
        }
        None => None,
    }
}

fn decode_batch(mut rest: &[u8]) -> Option<Vec<RecordRef<'_>>> {
    let (count, tail) = rest.split_first_chunk::<4>()?;
    rest = tail;
    let count = u32::from_be_bytes(*count) as usize;
    let mut records = Vec::with_capacity(count.min(rest.len() / RECORD_HEADER));
    for _ in 0..count {
        let (header, tail) = rest.split_first_chunk::<RECORD_HEADER>()?;
        let (seq, header) = header.split_first_chunk::<8>()?;
        let (queued_at, length) = header.split_first_chunk::<8>()?;
        let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
        if tail.len() < length {
            return None;
        }
        let (record, tail) = tail.split_at(length);
        records.push(RecordRef {
            seq: u64::from_be_bytes(*seq),
            queued_at: u64::from_be_bytes(*queued_at),
            record,
        });
        rest = tail;
    }
    rest.is_empty().then_some(records)
}

/// What one record adds to the outbox's byte count: its header and its bytes.
pub fn stored_size(record: &[u8]) -> u64 {
    (RECORD_HEADER + record.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, bytes: &[u8]) -> RecordRef<'_> {
        RecordRef {
            seq,
            queued_at: 1_700_000_000_000 + seq,
            record: bytes,
        }
    }

    #[test]
    fn batches_round_trip() {
        let records = [record(7, b"a"), record(9, b""), record(10, &[0xff; 300])];
        let value = encode(records.iter().copied());
        assert_eq!(decode(&7u64.to_be_bytes(), &value), Some(records.to_vec()));
    }

    #[test]
    fn single_records_from_before_batching_read_as_batches_of_one() {
        let queued_at: u64 = 1_764_000_000_000;
        let mut value = queued_at.to_be_bytes().to_vec();
        value.extend_from_slice(b"payload");
        assert_eq!(
            decode(&42u64.to_be_bytes(), &value),
            Some(vec![RecordRef {
                seq: 42,
                queued_at,
                record: b"payload"
            }])
        );
    }

    #[test]
    fn damaged_values_are_refused_not_misread() {
        let value = encode([record(1, b"abc"), record(2, b"de")].into_iter());
        let key = 1u64.to_be_bytes();
        for cut in 1..value.len() {
            assert_eq!(decode(&key, &value[..cut]), None, "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(decode(&key, &longer), None);
        assert_eq!(decode(&key, &[]), None);
        assert_eq!(decode(&key, &[0; 4]), None);
    }
}
