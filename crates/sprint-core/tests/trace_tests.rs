//! Tests of the on-disk trace format: round trips, compactness, and robustness against
//! truncated, corrupted and hostile input.

use std::path::PathBuf;

use proptest::prelude::*;
use sprint_core::trace::{
    FORMAT_VERSION, HeadTrace, KindBytes, KindTotals, MAGIC, QueryRecord, ROW_RAW, ROW_XOR,
    TAG_END, TAG_HEAD, TraceHeader, TraceReader, TraceWriter, read_trace, write_trace,
};
use sprint_core::{BitMatrix, BitVec, CoreError, Result};

// ----------------------------------- helpers -----------------------------------------------

/// SplitMix64: a tiny deterministic generator so proptest only has to shrink a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

fn header(n_queries: u32, n_keys: u32) -> TraceHeader {
    TraceHeader {
        producer: "trace_tests".into(),
        workload: "synthetic".into(),
        variant: "sprint".into(),
        layers: 300,
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        n_queries,
        n_keys,
        causal: false,
        bytes: KindBytes {
            k_msb: 32,
            k_lsb: 32,
            v: 64,
            q: 64,
            index: 2,
        },
        k_buffer_bytes: 1 << 16,
        v_buffer_bytes: 1 << 17,
        locality_policy: sprint_core::config::LocalityPolicy::SldStrict,
        provenance: None,
    }
}

/// A consistent record for a valid query with `kept` keys.
fn record(rng: &mut Rng, kept: u32) -> QueryRecord {
    let k_fetched = rng.below(u64::from(kept) + 1) as u32;
    let v_fetched = rng.below(u64::from(kept) + 1) as u32;
    QueryRecord {
        kept,
        softmax_kept: rng.below(u64::from(kept) + 1) as u32,
        k_fetched,
        k_reused: kept - k_fetched,
        k_streamed: rng.below(u64::from(k_fetched) + 1) as u32,
        v_fetched,
        v_reused: kept - v_fetched,
        v_streamed: rng.below(u64::from(v_fetched) + 1) as u32,
    }
}

/// A random valid head: some padding queries, rows that are either fresh or small edits of
/// the previous row (so both row encodings occur).
fn random_head(rng: &mut Rng, h: &TraceHeader, layer: u32, head: u32) -> HeadTrace {
    let (nq, nk) = (h.n_queries as usize, h.n_keys as usize);
    let qv: Vec<usize> = (0..nq).filter(|_| rng.chance(0.8)).collect();
    let kv: Vec<usize> = (0..nk).filter(|_| rng.chance(0.9)).collect();
    let query_valid = BitVec::from_indices(nq, qv);
    let key_valid = BitVec::from_indices(nk, kv);
    let mut masks = BitMatrix::zeros(nq, nk);
    let mut records = Vec::with_capacity(nq);
    let mut prev = BitVec::zeros(nk);
    for i in 0..nq {
        if !query_valid.get(i) {
            records.push(QueryRecord::default());
            continue;
        }
        let mut row = prev.clone();
        if rng.chance(0.3) {
            let density = rng.next() as f64 / u64::MAX as f64;
            for k in 0..nk {
                row.set(k, rng.chance(density));
            }
        } else {
            for _ in 0..rng.below(4) {
                if nk > 0 {
                    let k = rng.below(nk as u64) as usize;
                    row.set(k, !row.get(k));
                }
            }
        }
        masks.set_row(i, &row);
        records.push(record(rng, row.count_ones() as u32));
        prev = row;
    }
    HeadTrace {
        layer,
        head,
        kv_head: head / (h.heads / h.kv_heads),
        query_valid,
        key_valid,
        masks,
        records,
        stats: Default::default(),
    }
}

/// `count` distinct random heads.
fn random_heads(rng: &mut Rng, h: &TraceHeader, count: usize) -> Vec<HeadTrace> {
    (0..count)
        .map(|i| {
            let layer = (i as u32 * 97) % h.layers;
            let head = (i as u32) % h.heads;
            random_head(rng, h, layer, head)
        })
        .collect()
}

fn encode(h: &TraceHeader, heads: &[HeadTrace]) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), h).unwrap();
    for head in heads {
        w.write_head(head).unwrap();
    }
    w.finish().unwrap()
}

fn decode(bytes: &[u8]) -> Result<(TraceHeader, Vec<HeadTrace>)> {
    let mut r = TraceReader::new(bytes)?;
    let heads = r.by_ref().collect::<Result<Vec<_>>>()?;
    Ok((r.header().clone(), heads))
}

fn trace_message(e: CoreError) -> String {
    match e {
        CoreError::Trace { message, .. } => message,
        other => panic!("expected a trace error, got {other:?}"),
    }
}

/// The file header alone (what `TraceWriter::new` writes).
/// A file header announcing format version 1, whose head payloads (built by hand below)
/// carry no statistics section.
fn header_bytes(h: &TraceHeader) -> Vec<u8> {
    let mut b = TraceWriter::new(Vec::new(), h).unwrap().finish().unwrap();
    b.truncate(b.len() - 9);
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn push_block(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(TAG_HEAD);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

fn push_end(out: &mut Vec<u8>, count: u32) {
    out.push(TAG_END);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&count.to_le_bytes()).to_le_bytes());
}

/// A whole file with the given raw payloads as head blocks (valid checksums).
fn file_with_payloads(h: &TraceHeader, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header_bytes(h);
    for p in payloads {
        push_block(&mut out, p);
    }
    push_end(&mut out, payloads.len() as u32);
    out
}

/// Payload bytes of the first head block of a trace written by `encode`.
fn first_payload(bytes: &[u8]) -> Vec<u8> {
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let block = 16 + json_len + 4;
    assert_eq!(bytes[block], TAG_HEAD);
    let len = u32::from_le_bytes(bytes[block + 1..block + 5].try_into().unwrap()) as usize;
    bytes[block + 5..block + 5 + len].to_vec()
}

/// Handwritten payload of a 1-query, 10-key head: record fields then one row.
fn tiny_payload(record: [u32; 8], row: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    put_varint(&mut p, 0); // layer
    put_varint(&mut p, 0); // head
    put_varint(&mut p, 0); // kv_head
    p.extend_from_slice(&[0xff, 0x03]); // key_valid: 10 bits
    p.push(0x01); // query_valid: 1 bit
    for f in record {
        put_varint(&mut p, f);
    }
    p.extend_from_slice(row);
    p
}

fn small_trace() -> (TraceHeader, Vec<HeadTrace>, Vec<u8>) {
    let h = header(5, 19);
    let heads = random_heads(&mut Rng(7), &h, 2);
    let bytes = encode(&h, &heads);
    (h, heads, bytes)
}

fn tmp_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sprint-core-trace-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("out.trace")
}

// ----------------------------------- round trips -------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_random_heads(nq in 0u32..24, nk in 0u32..150, count in 0usize..5, seed: u64) {
        let h = header(nq, nk);
        let heads = random_heads(&mut Rng(seed), &h, count);
        let bytes = encode(&h, &heads);
        let (h2, heads2) = decode(&bytes).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(heads2, heads);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
        // The same garbage behind a valid magic and version, to get past the first check.
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = decode(&framed);
    }

    #[test]
    fn random_bit_flip_is_detected(seed: u64, pick: u64) {
        let h = header(1 + (seed % 9) as u32, 1 + (seed % 70) as u32);
        let heads = random_heads(&mut Rng(seed), &h, 3);
        let mut bytes = encode(&h, &heads);
        let bit = (pick % (bytes.len() as u64 * 8)) as usize;
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode(&bytes).is_err(), "flip of bit {} accepted", bit);
    }

    /// Checksums shield the decoder from most corruption; here they are recomputed so the
    /// decoder's own validation sees hostile payloads. It must reject or return valid heads.
    #[test]
    fn hostile_payloads_with_valid_checksums(
        seed: u64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let h = header(1 + (seed % 6) as u32, (seed % 40) as u32);
        let heads = random_heads(&mut Rng(seed), &h, 1);
        let mut payload = first_payload(&encode(&h, &heads));
        for (pos, byte) in edits {
            let i = pos % payload.len();
            payload[i] = byte;
        }
        for p in [payload, junk] {
            if let Ok((_, got)) = decode(&file_with_payloads(&h, &[p])) {
                for g in &got {
                    prop_assert!(g.validate(&h).is_ok());
                }
            }
        }
    }
}

#[test]
fn file_round_trip_is_atomic() {
    let path = tmp_path("roundtrip");
    let h = header(12, 100);
    let heads = random_heads(&mut Rng(3), &h, 4);
    write_trace(&path, &h, &heads).unwrap();
    let (h2, heads2) = read_trace(&path).unwrap();
    assert_eq!(h2, h);
    assert_eq!(heads2, heads);

    // A failing write leaves the previous file intact and no temporary files behind.
    let mut bad = heads[0].clone();
    bad.records[0].kept += 1;
    bad.query_valid.set(0, true);
    let err = write_trace(&path, &h, [&heads[1], &bad]).unwrap_err();
    assert!(matches!(err, CoreError::Trace { .. }), "{err}");
    assert_eq!(read_trace(&path).unwrap().1, heads);
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("out.trace")]);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn io_errors_carry_the_path() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-dir/x.trace");
    match read_trace(&missing).unwrap_err() {
        CoreError::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let h = header(1, 1);
    assert!(matches!(
        write_trace(&missing, &h, Vec::<&HeadTrace>::new()).unwrap_err(),
        CoreError::Io { .. }
    ));
}

#[test]
fn empty_trace_round_trips() {
    let h = header(3, 3);
    let bytes = encode(&h, &[]);
    let (h2, heads) = decode(&bytes).unwrap();
    assert_eq!(h2, h);
    assert!(heads.is_empty());
}

// ----------------------------------- compactness -------------------------------------------

/// 4096 x 4096 head whose kept set drifts by about 2% of the keys per query: the XOR row
/// encoding must make it far smaller than the raw bitmap.
#[test]
fn slowly_changing_masks_compress() {
    let n = 4096u32;
    let h = header(n, n);
    let mut rng = Rng(11);
    let mut masks = BitMatrix::zeros(n as usize, n as usize);
    let mut row = BitVec::from_indices(n as usize, (0..n as usize).filter(|k| k % 8 == 0));
    let mut records = Vec::new();
    for i in 0..n as usize {
        for _ in 0..(n / 50) {
            let k = rng.below(u64::from(n)) as usize;
            row.set(k, !row.get(k));
        }
        masks.set_row(i, &row);
        records.push(record(&mut rng, row.count_ones() as u32));
    }
    let head = HeadTrace {
        layer: 1,
        head: 2,
        kv_head: 1,
        query_valid: BitVec::ones(n as usize),
        key_valid: BitVec::ones(n as usize),
        masks,
        records,
        stats: Default::default(),
    };
    let bytes = encode(&h, std::slice::from_ref(&head));
    let payload = first_payload(&bytes).len();
    let raw = (n as usize) * (n as usize) / 8;
    assert!(
        payload * 4 < raw,
        "payload {payload} bytes is not < 25% of the raw bitmap {raw} bytes"
    );
    let (_, back) = decode(&bytes).unwrap();
    assert_eq!(back, vec![head]);
}

#[test]
fn dense_random_rows_fall_back_to_raw() {
    let h = header(2, 64);
    let mut masks = BitMatrix::zeros(2, 64);
    let mut rng = Rng(5);
    for i in 0..2 {
        for k in 0..64 {
            masks.set(i, k, rng.chance(0.5));
        }
    }
    let records = (0..2)
        .map(|i| record(&mut rng, masks.row_count_ones(i) as u32))
        .collect();
    let head = HeadTrace {
        layer: 0,
        head: 0,
        kv_head: 0,
        query_valid: BitVec::ones(2),
        key_valid: BitVec::ones(64),
        masks,
        records,
        stats: Default::default(),
    };
    let bytes = encode(&h, std::slice::from_ref(&head));
    // 3 ids + 8 + 1 bitmap bytes + per query (record varints + tag + 8 raw bytes).
    let payload = first_payload(&bytes);
    let rec_len = |r: &QueryRecord| {
        let mut v = Vec::new();
        for f in [
            r.kept,
            r.softmax_kept,
            r.k_fetched,
            r.k_reused,
            r.k_streamed,
            r.v_fetched,
            r.v_reused,
            r.v_streamed,
        ] {
            put_varint(&mut v, f);
        }
        v.len()
    };
    let first_tag = 3 + 8 + 1 + rec_len(&head.records[0]);
    assert_eq!(payload[first_tag], ROW_RAW);
    // Version 2 ends with the statistics: a count and six varints (zero here).
    assert_eq!(
        payload.len(),
        first_tag + 1 + 8 + rec_len(&head.records[1]) + 1 + 8 + 7
    );
    assert_eq!(decode(&bytes).unwrap().1, vec![head]);
}

// ----------------------------------- robustness --------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    let (_, _, bytes) = small_trace();
    for n in 0..bytes.len() {
        let err = decode(&bytes[..n]).unwrap_err();
        let msg = trace_message(err);
        assert!(msg.contains("truncated"), "prefix {n}: {msg}");
    }
    assert!(decode(&bytes).is_ok());
}

#[test]
fn every_single_bit_flip_is_an_error() {
    let (_, _, bytes) = small_trace();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&b).is_err(), "flip of bit {bit} accepted");
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let (_, _, mut bytes) = small_trace();
    bytes.push(0);
    let msg = trace_message(decode(&bytes).unwrap_err());
    assert!(msg.contains("trailing"), "{msg}");
}

#[test]
fn reader_is_fused_after_an_error() {
    let (_, _, bytes) = small_trace();
    let cut = &bytes[..bytes.len() - 3];
    let mut r = TraceReader::new(cut).unwrap();
    let items: Vec<_> = r.by_ref().collect();
    assert_eq!(items.len(), 3);
    assert!(items[2].is_err());
    assert!(r.next().is_none());
    assert!(r.next_head().is_err());
}

#[test]
fn unknown_version_is_rejected() {
    let (_, _, mut bytes) = small_trace();
    bytes[8..10].copy_from_slice(&3u16.to_le_bytes());
    let msg = trace_message(decode(&bytes).unwrap_err());
    assert!(msg.contains("unsupported trace format version 3"), "{msg}");
    bytes[8..10].copy_from_slice(&0u16.to_le_bytes());
    assert!(decode(&bytes).is_err());
}

#[test]
fn bad_magic_is_rejected() {
    let msg = trace_message(decode(b"PK\x03\x04 not a trace at all").unwrap_err());
    assert!(msg.contains("magic"), "{msg}");
}

#[test]
fn insane_headers_are_rejected() {
    let craft = |h: &TraceHeader| {
        let json = serde_json::to_vec(h).unwrap();
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(json.len() as u32).to_le_bytes());
        b.extend_from_slice(&json);
        b.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        push_end(&mut b, 0);
        b
    };
    type Edit = fn(&mut TraceHeader);
    let cases: Vec<(Edit, &str)> = vec![
        (|h| h.heads = 0, "heads"),
        (|h| h.kv_heads = 0, "kv_heads"),
        (|h| h.kv_heads = 3, "kv_heads"),
        (|h| h.layers = 0, "layers"),
        (|h| h.head_dim = 1 << 17, "head_dim"),
        (|h| h.n_queries = (1 << 20) + 1, "n_queries"),
        (|h| h.n_keys = (1 << 20) + 1, "n_keys"),
        (
            |h| {
                h.n_queries = 1 << 20;
                h.n_keys = 1 << 20;
            },
            "mask bits",
        ),
    ];
    for (edit, word) in cases {
        let mut h = header(4, 4);
        edit(&mut h);
        let msg = trace_message(decode(&craft(&h)).unwrap_err());
        assert!(msg.contains(word), "{word}: {msg}");
        assert!(TraceWriter::new(Vec::new(), &h).is_err());
    }
    // Header JSON length over the limit.
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&((1u32 << 20) + 1).to_le_bytes());
    assert!(trace_message(decode(&b).unwrap_err()).contains("exceeds"));
}

/// A header claiming the largest shapes, followed by a block that claims a huge payload,
/// in a file of a few hundred bytes: the reader must fail without allocating the claim.
#[test]
fn huge_claims_in_a_tiny_file_fail_cheaply() {
    let h = header(1 << 16, 1 << 16);
    let mut b = header_bytes(&h);
    b.push(TAG_HEAD);
    b.extend_from_slice(&500_000_000u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 64]);
    let msg = trace_message(decode(&b).unwrap_err());
    assert!(msg.contains("truncated"), "{msg}");

    // A length beyond the header's worst case is rejected before reading anything.
    let mut b = header_bytes(&h);
    b.push(TAG_HEAD);
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    let msg = trace_message(decode(&b).unwrap_err());
    assert!(msg.contains("payload length"), "{msg}");

    // A header JSON length at the limit with nothing behind it.
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(1u32 << 20).to_le_bytes());
    b.extend_from_slice(b"{\"producer\"");
    assert!(trace_message(decode(&b).unwrap_err()).contains("truncated"));

    // Too many blocks for layers x heads.
    let mut small = header(1, 1);
    small.layers = 1;
    small.heads = 1;
    small.kv_heads = 1;
    let one = tiny_payload([0; 8], &[ROW_RAW, 0, 0]);
    let mut h1 = small.clone();
    h1.n_keys = 10;
    let b = file_with_payloads(&h1, &[one.clone(), one]);
    let msg = trace_message(decode(&b).unwrap_err());
    assert!(msg.contains("more head blocks"), "{msg}");
}

#[test]
fn decoder_rejects_malformed_payloads() {
    let mut h = header(1, 10);
    h.layers = 1;
    h.heads = 1;
    h.kv_heads = 1;
    let ok = |p: Vec<u8>| decode(&file_with_payloads(&h, &[p]));
    let bad = |p: Vec<u8>, word: &str| {
        let msg = trace_message(decode(&file_with_payloads(&h, &[p])).unwrap_err());
        assert!(msg.contains(word), "expected '{word}' in: {msg}");
    };
    // Reference: kept 2 = keys {1, 9} as raw, and as XOR (gaps 1, 7).
    let rec = [2, 2, 1, 1, 0, 2, 0, 1];
    let raw = ok(tiny_payload(rec, &[ROW_RAW, 0x02, 0x02])).unwrap().1;
    let xor = ok(tiny_payload(rec, &[ROW_XOR, 2, 1, 7])).unwrap().1;
    assert_eq!(raw, xor);
    assert_eq!(raw[0].masks.row_ones(0).collect::<Vec<_>>(), vec![1, 9]);

    bad(tiny_payload(rec, &[ROW_RAW, 0x02, 0x06]), "past its length");
    bad(tiny_payload(rec, &[ROW_XOR, 2, 1, 8]), "out of range");
    bad(tiny_payload(rec, &[ROW_XOR, 11]), "flipped bits");
    bad(tiny_payload(rec, &[ROW_XOR, 1, 1]), "mask row has 1 keys");
    bad(tiny_payload(rec, &[2, 0, 0]), "unknown mask row encoding");
    bad(tiny_payload(rec, &[ROW_XOR, 2, 1, 7, 0]), "unused bytes");
    bad(tiny_payload(rec, &[ROW_XOR, 2, 1]), "ends inside");
    bad(
        tiny_payload([2, 2, 2, 1, 0, 2, 0, 0], &[ROW_XOR, 2, 1, 7]),
        "k_fetched + k_reused",
    );
    bad(
        tiny_payload([2, 2, 1, 1, 0, 1, 0, 0], &[ROW_XOR, 2, 1, 7]),
        "v_fetched + v_reused",
    );
    bad(
        tiny_payload([2, 2, 1, 1, 2, 2, 0, 1], &[ROW_XOR, 2, 1, 7]),
        "k_streamed",
    );
    bad(
        tiny_payload([2, 2, 1, 1, 0, 2, 0, 3], &[ROW_XOR, 2, 1, 7]),
        "v_streamed",
    );
    bad(
        tiny_payload([2, 3, 1, 1, 0, 2, 0, 1], &[ROW_XOR, 2, 1, 7]),
        "softmax_kept",
    );

    // Overlong and overflowing varints (the flip count here).
    bad(tiny_payload(rec, &[ROW_XOR, 0x82, 0x00, 1, 7]), "overlong");
    bad(
        tiny_payload(rec, &[ROW_XOR, 0xff, 0xff, 0xff, 0xff, 0x1f]),
        "overflows",
    );

    // Layer out of range, and padding rows with content.
    let mut p = tiny_payload(rec, &[ROW_XOR, 2, 1, 7]);
    p[0] = 1;
    bad(p, "layer 1 out of range");
    let mut p = tiny_payload([0; 8], &[ROW_XOR, 1, 3]);
    p[5] = 0; // query_valid = 0
    bad(p, "padding query has 1 keys");
    let mut p = tiny_payload([1, 0, 1, 0, 0, 1, 0, 0], &[ROW_XOR, 0]);
    p[5] = 0;
    bad(p, "padding query has a non-zero record");
    let mut p = tiny_payload([0; 8], &[ROW_XOR, 0]);
    p[5] = 2; // query_valid bit past n_queries = 1
    bad(p, "past its length");

    // The same (layer, head) twice.
    let good = tiny_payload(rec, &[ROW_XOR, 2, 1, 7]);
    let mut h2 = h.clone();
    h2.layers = 2;
    let msg = trace_message(decode(&file_with_payloads(&h2, &[good.clone(), good])).unwrap_err());
    assert!(msg.contains("appears twice"), "{msg}");
}

#[test]
fn end_marker_count_must_match() {
    let (h, heads, _) = small_trace();
    let full = encode(&h, &heads);
    let mut b = full[..full.len() - 9].to_vec();
    push_end(&mut b, 1);
    let msg = trace_message(decode(&b).unwrap_err());
    assert!(msg.contains("end marker counts 1"), "{msg}");
}

#[test]
fn error_offsets_point_into_the_stream() {
    let mut h = header(1, 10);
    h.layers = 1;
    let b = file_with_payloads(
        &h,
        &[tiny_payload([2, 2, 1, 1, 0, 2, 0, 1], &[ROW_XOR, 2, 1, 8])],
    );
    let gap_offset = b.len() - 9 - 4 - 1; // the last gap byte, before block CRC and end marker
    match decode(&b).unwrap_err() {
        CoreError::Trace { offset, .. } => assert_eq!(offset, gap_offset as u64),
        other => panic!("{other:?}"),
    }
}

// ----------------------------------- writer validation -------------------------------------

#[test]
fn writer_rejects_inconsistent_heads() {
    let h = header(6, 30);
    let good = random_heads(&mut Rng(9), &h, 1).remove(0);
    let valid_query = (0..6).find(|&i| good.query_valid.get(i)).unwrap();
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    let before = w.bytes_written();
    let reject = |w: &mut TraceWriter<Vec<u8>>, head: &HeadTrace, word: &str| {
        let msg = trace_message(w.write_head(head).unwrap_err());
        assert!(msg.contains(word), "expected '{word}' in: {msg}");
    };

    let mut bad = good.clone();
    bad.records[valid_query].kept += 1;
    bad.records[valid_query].k_reused += 1;
    bad.records[valid_query].v_reused += 1;
    reject(&mut w, &bad, "mask row has");

    let mut bad = good.clone();
    bad.records[valid_query].k_fetched += 1;
    reject(&mut w, &bad, "k_fetched + k_reused");

    let mut bad = good.clone();
    bad.records[valid_query].v_reused += 1;
    reject(&mut w, &bad, "v_fetched + v_reused");

    let mut bad = good.clone();
    bad.layer = h.layers;
    reject(&mut w, &bad, "layer out of range");

    let mut bad = good.clone();
    bad.kv_head = h.kv_heads;
    reject(&mut w, &bad, "kv_head");

    let mut bad = good.clone();
    bad.masks = BitMatrix::zeros(6, 31);
    reject(&mut w, &bad, "mask is 6 x 31");

    let mut bad = good.clone();
    bad.records.pop();
    reject(&mut w, &bad, "records");

    let mut bad = good.clone();
    bad.query_valid.set(valid_query, false);
    reject(&mut w, &bad, "padding query");

    assert_eq!(
        w.bytes_written(),
        before,
        "rejected heads must write nothing"
    );
    w.write_head(&good).unwrap();
    reject(&mut w, &good, "twice");
    assert_eq!(w.blocks_written(), 1);
    let bytes = w.finish().unwrap();
    assert_eq!(decode(&bytes).unwrap().1, vec![good]);
}

// ----------------------------------- byte accounting ---------------------------------------

#[test]
fn bytes_by_kind_sums_records() {
    let h = header(3, 8);
    let mut masks = BitMatrix::zeros(3, 8);
    for k in 0..4 {
        masks.set(0, k, true);
    }
    masks.set(2, 7, true);
    let head = HeadTrace {
        layer: 0,
        head: 0,
        kv_head: 0,
        query_valid: BitVec::from_indices(3, [0, 2]),
        key_valid: BitVec::ones(8),
        masks,
        stats: Default::default(),
        records: vec![
            QueryRecord {
                kept: 4,
                softmax_kept: 3,
                k_fetched: 3,
                k_reused: 1,
                k_streamed: 0,
                v_fetched: 2,
                v_reused: 2,
                v_streamed: 1,
            },
            QueryRecord::default(),
            QueryRecord {
                kept: 1,
                softmax_kept: 1,
                k_fetched: 0,
                k_reused: 1,
                k_streamed: 0,
                v_fetched: 1,
                v_reused: 0,
                v_streamed: 0,
            },
        ],
    };
    head.validate(&h).unwrap();
    let fetched = head.bytes_by_kind(&h.bytes);
    assert_eq!(
        fetched,
        KindTotals {
            k_msb: 3 * 32,
            k_lsb: 3 * 32,
            v: 3 * 64,
            q: 2 * 64,
            index: 3 * 2,
        }
    );
    let reused = head.reused_bytes_by_kind(&h.bytes);
    assert_eq!(
        reused,
        KindTotals {
            k_msb: 2 * 32,
            k_lsb: 2 * 32,
            v: 2 * 64,
            q: 0,
            index: 2 * 2,
        }
    );
    assert_eq!((fetched + reused).total(), fetched.total() + reused.total());
}

/// Version 2: head statistics and the provenance header round-trip; version-1 files still
/// read, with zero statistics and the `residency` policy they were made with.
#[test]
fn version_two_statistics_and_provenance_round_trip() {
    let mut h = header(5, 40);
    h.provenance = Some(sprint_core::trace::Provenance {
        tool: "sprint test".into(),
        config_toml: "[threshold]\nvalue = -inf\n".into(),
        thresholds_toml: "per_head = [[-inf, 0.5]]\n".into(),
        seed: 9,
        recompute: "fixed-point".into(),
    });
    let mut rng = Rng(3);
    let mut head = random_head(&mut rng, &h, 0, 0);
    head.stats = sprint_core::trace::HeadStats {
        audited: 1,
        exact_kept: 123,
        false_pruned: 4,
        false_kept: 5,
        score_saturated: u64::from(u32::MAX) + 7,
        output_saturated: 1,
        k_bits_processed: 0,
        cascade_tokens_kept: 0,
        cascade_head_pruned: 0,
        requant_rows: 0,
        candidate_iterations: 0,
        filter_kept: [0; 4],
    };
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    w.write_head(&head).unwrap();
    let bytes = w.finish().unwrap();
    let (h2, heads) = decode(&bytes).unwrap();
    assert_eq!(h2, h);
    assert_eq!(heads, vec![head.clone()]);
    // A seventh statistic (bit-planes of a bit-serial variant) round-trips, and adds bytes
    // only when it is not zero.
    let mut serial = head.clone();
    serial.stats.k_bits_processed = 3 * 8 * 40;
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    w.write_head(&serial).unwrap();
    let serial_bytes = w.finish().unwrap();
    assert!(serial_bytes.len() > bytes.len());
    assert_eq!(decode(&serial_bytes).unwrap().1, vec![serial.clone()]);
    // SpAtten's statistics (eighth to tenth) round-trip with a zero seventh before them.
    let mut cascade = head.clone();
    cascade.stats.cascade_tokens_kept = 30;
    cascade.stats.requant_rows = 7;
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    w.write_head(&cascade).unwrap();
    let cascade_bytes = w.finish().unwrap();
    assert_eq!(cascade_bytes.len(), bytes.len() + 4);
    assert_eq!(decode(&cascade_bytes).unwrap().1, vec![cascade]);
    // The candidate-search iterations and the filtering rounds' survivors (A3, Energon)
    // round-trip too; a statistic past the last non-zero one adds no bytes.
    let mut filtered = head.clone();
    filtered.stats.candidate_iterations = 40 * 7;
    filtered.stats.filter_kept = [900, 300, 0, 0];
    let mut w = TraceWriter::new(Vec::new(), &h).unwrap();
    w.write_head(&filtered).unwrap();
    let filtered_bytes = w.finish().unwrap();
    assert_eq!(decode(&filtered_bytes).unwrap().1, vec![filtered.clone()]);
    assert_eq!(filtered.stats.to_vec().len(), 13);
    assert_eq!(serial.stats.to_vec().len(), 7);
    assert_eq!(head.stats.to_vec().len(), 6);
    // The same header as a version-1 file without the new fields.
    let mut json: serde_json::Value = serde_json::to_value(&h).unwrap();
    json.as_object_mut().unwrap().remove("locality_policy");
    json.as_object_mut().unwrap().remove("provenance");
    let old: TraceHeader = serde_json::from_value(json).unwrap();
    assert_eq!(
        old.locality_policy,
        sprint_core::config::LocalityPolicy::Residency
    );
}
