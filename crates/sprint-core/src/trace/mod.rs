//! The attention trace: for every (layer, query head, query), which keys were moved on chip
//! and how the locality engine served them. It is the only contract between the functional
//! model and the simulator; its on-disk format is documented in `docs/trace-format.md`.
//!
//! Parts, leaves first: `records` the types; `format` the on-disk constants and the checks
//! of a header and a head; `encode` the writer; `decode` the reader; this file the whole-file
//! helpers.

mod decode;
mod encode;
mod format;
mod records;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::error::{CoreError, Result};

pub use decode::TraceReader;
pub use encode::TraceWriter;
use format::with_path;
pub use format::{
    KindTotals, MAGIC, MAX_HEAD_DIM, MAX_HEADER_JSON_BYTES, MAX_LAYERS_OR_HEADS, MAX_MASK_BITS,
    MAX_TOKENS, ROW_RAW, ROW_XOR, TAG_END, TAG_HEAD,
};
pub use records::{
    FORMAT_VERSION, HeadStats, HeadTrace, KindBytes, MAX_HEAD_STATS, OLDEST_READABLE_VERSION,
    Provenance, QueryRecord, TraceHeader,
};

/// Writes a whole trace to `path` atomically: the blocks stream into a temporary file in the
/// same directory, which is synced and then renamed over `path`. On error or signal the temporary
/// file is removed and `path` is left untouched ([`crate::outfile::write_atomic`]).
pub fn write_trace<'a>(
    path: &Path,
    header: &TraceHeader,
    heads: impl IntoIterator<Item = &'a HeadTrace>,
) -> Result<()> {
    crate::outfile::write_atomic(path, |file| {
        let mut w = TraceWriter::new(file, header)?;
        for h in heads {
            w.write_head(h)?;
        }
        w.finish()?;
        Ok(())
    })
    .map_err(|e| with_path(e, path))
}

/// Reads and validates a whole trace file.
pub fn read_trace(path: &Path) -> Result<(TraceHeader, Vec<HeadTrace>)> {
    let file = File::open(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let run = || {
        let mut r = TraceReader::new(BufReader::new(file))?;
        let heads = r.by_ref().collect::<Result<Vec<_>>>()?;
        Ok((r.header().clone(), heads))
    };
    run().map_err(|e| with_path(e, path))
}

#[cfg(test)]
mod tests {
    use super::decode::*;
    use super::encode::*;
    use super::*;
    use crate::bits::{BitMatrix, BitVec};

    #[test]
    fn varints_are_canonical_leb128() {
        for (v, len) in [
            (0u32, 1usize),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (1 << 21, 4),
            (1 << 28, 5),
            (u32::MAX, 5),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), len, "{v}");
            let mut c = Cursor {
                buf: &buf,
                pos: 0,
                base: 100,
            };
            assert_eq!(c.varint("x").unwrap(), v);
            assert_eq!(c.pos, len);
        }
        let bad: [&[u8]; 5] = [
            &[0x80, 0x00],
            &[0xff, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0x10],
            &[0xff, 0xff, 0xff, 0xff, 0x8f],
            &[0x80],
        ];
        for b in bad {
            let mut c = Cursor {
                buf: b,
                pos: 0,
                base: 100,
            };
            match c.varint("x") {
                Err(CoreError::Trace { offset, .. }) => assert!(offset >= 100),
                other => panic!("{b:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn payload_bounds_bracket_real_encodings() {
        let h = TraceHeader {
            producer: String::new(),
            workload: String::new(),
            variant: String::new(),
            layers: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 8,
            n_queries: 3,
            n_keys: 20,
            causal: true,
            bytes: KindBytes::default(),
            k_buffer_bytes: 0,
            v_buffer_bytes: 0,
            locality_policy: crate::config::LocalityPolicy::SldStrict,
            provenance: None,
        };
        let mut empty = HeadTrace {
            layer: 0,
            head: 0,
            kv_head: 0,
            query_valid: BitVec::ones(3),
            key_valid: BitVec::ones(20),
            masks: BitMatrix::zeros(3, 20),
            records: vec![QueryRecord::default(); 3],
            stats: Default::default(),
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encode_head(&empty, &mut out, &mut scratch);
        // The writer appends six zero statistics (one byte each) after the count.
        assert_eq!(out.len() as u64, h.min_payload_len(2) + 6);
        let big = u32::MAX / 2;
        for i in 0..3 {
            for k in 0..20 {
                empty.masks.set(i, k, (i + k) % 2 == 0);
            }
            empty.records[i] = QueryRecord {
                kept: big,
                softmax_kept: big,
                k_fetched: big,
                k_reused: big,
                k_streamed: big,
                v_fetched: big,
                v_reused: big,
                v_streamed: big,
            };
        }
        encode_head(&empty, &mut out, &mut scratch);
        assert!(out.len() as u64 <= h.max_payload_len());
    }
}
