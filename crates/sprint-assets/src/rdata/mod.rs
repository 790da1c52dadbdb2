//! A small reader for R's serialisation format (XDR, versions 2 and 3) and for R lazy-load
//! databases (`.rdx` index + `.rdb` records), enough for data packages: character, logical,
//! integer, double, complex and raw vectors, lists, pairlists, symbols, attributes,
//! references, environments (contents read and dropped) and the common ALTREP classes.
//!
//! Every length is checked against the bytes that remain before anything is allocated,
//! nesting depth and decompressed sizes are bounded, and malformed input is an
//! [`AssetError::RData`], never a panic.
//!
//! Lazy-load database layout (R's `makeLazyLoadDB`): the `.rdx` file is a (zlib- or
//! gzip-compressed) serialisation of `list(variables = list(<name> = c(offset, length),
//! ...), references = ..., compressed = TRUE | 2L | 3L)`; the record of a variable is the
//! `length` bytes at `offset` in the `.rdb` file: a 4-byte big-endian uncompressed length,
//! then (compressed = TRUE) a zlib stream, or (2L/3L) a type byte `Z` (zlib), `0` (stored)
//! or `X` (xz) and the stream; the decompressed bytes are a serialisation of the value.
//!
//! Modules, leaves first: `object` (the values), `xdr` (the serialisation reader),
//! `lazyload` (lazy-load databases and record decompression).

mod lazyload;
mod object;
mod xdr;

pub use lazyload::{LazyLoadDb, MAX_DECOMPRESSED, decompress_any, decompress_record};
pub use object::{NA_INTEGER, RObject, RValue};
pub use xdr::{MAX_COMPACT_SEQ, MAX_DEPTH, unserialize};

#[cfg(test)]
mod tests {
    use super::xdr::*;
    use super::*;
    use std::io::Write;
    use std::path::Path;

    /// Builds XDR serialisations by hand.
    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn header(v: i32) -> Self {
            let mut w = W(b"X\n".to_vec());
            w.int(v).int(0x0004_0201).int(0x0003_0500);
            if v == 3 {
                w.int(5);
                w.0.extend_from_slice(b"UTF-8");
            }
            w
        }
        fn int(&mut self, x: i32) -> &mut Self {
            self.0.extend_from_slice(&x.to_be_bytes());
            self
        }
        fn flags(&mut self, ty: u32, attr: bool, tag: bool, levels: u32) -> &mut Self {
            let f = ty
                | if attr { HAS_ATTR_BIT } else { 0 }
                | if tag { HAS_TAG_BIT } else { 0 }
                | (levels << 12);
            self.int(f as i32)
        }
        fn chars(&mut self, s: Option<&str>) -> &mut Self {
            self.flags(CHARSXP, false, false, 1 << 3);
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i32);
                    self.0.extend_from_slice(s.as_bytes());
                    self
                }
            }
        }
        fn strs(&mut self, v: &[Option<&str>], attr: bool) -> &mut Self {
            self.flags(STRSXP, attr, false, 0).int(v.len() as i32);
            for s in v {
                self.chars(*s);
            }
            self
        }
        fn sym(&mut self, name: &str) -> &mut Self {
            self.flags(SYMSXP, false, false, 0).chars(Some(name))
        }
        fn nil(&mut self) -> &mut Self {
            self.int(NILVALUE_SXP as i32)
        }
    }

    #[test]
    fn character_vector_with_na_and_utf8() {
        let mut w = W::header(3);
        w.strs(&[Some("EMMA"), None, Some("caf\u{e9}")], false);
        let o = unserialize(&w.0).unwrap();
        assert_eq!(
            o.value,
            RValue::Character(vec![Some("EMMA".into()), None, Some("caf\u{e9}".into())])
        );
    }

    #[test]
    fn latin1_flagged_string() {
        let mut w = W::header(2);
        w.flags(STRSXP, false, false, 0).int(1);
        w.flags(CHARSXP, false, false, LATIN1_MASK).int(4);
        w.0.extend_from_slice(&[b'c', b'a', b'f', 0xe9]);
        let o = unserialize(&w.0).unwrap();
        assert_eq!(o.value, RValue::Character(vec![Some("caf\u{e9}".into())]));
    }

    /// `list(a = 1:2, b = "x")` with a names attribute, the second `names` symbol stored as
    /// a reference, like R writes it.
    #[test]
    fn named_list_with_attributes_and_references() {
        let mut w = W::header(3);
        w.flags(VECSXP, true, false, 0).int(2);
        w.flags(INTSXP, false, false, 0)
            .int(2)
            .int(1)
            .int(NA_INTEGER);
        w.flags(STRSXP, true, false, 0).int(1).chars(Some("x"));
        // attributes of the character vector: names = "n"
        w.flags(LISTSXP, false, true, 0).sym("names");
        w.strs(&[Some("n")], false).nil();
        // attributes of the list: names = c("a", "b"), symbol by reference (index 1)
        w.flags(LISTSXP, false, true, 0)
            .int((1 << 8 | REFSXP) as i32);
        w.strs(&[Some("a"), Some("b")], false).nil();
        let o = unserialize(&w.0).unwrap();
        assert_eq!(o.names().unwrap(), vec!["a", "b"]);
        assert_eq!(
            o.get("a").unwrap().value,
            RValue::Integer(vec![1, NA_INTEGER])
        );
        let b = o.get("b").unwrap();
        assert_eq!(b.value, RValue::Character(vec![Some("x".into())]));
        assert_eq!(b.names().unwrap(), vec!["n"]);
        assert!(o.get("zzz").is_none());
    }

    #[test]
    fn reals_logicals_raw_and_long_length() {
        let mut w = W::header(2);
        w.flags(VECSXP, false, false, 0).int(3);
        w.flags(REALSXP, false, false, 0).int(1);
        w.0.extend_from_slice(&1.5f64.to_be_bytes());
        w.flags(LGLSXP, false, false, 0)
            .int(-1)
            .int(0)
            .int(2)
            .int(1)
            .int(0);
        w.flags(RAWSXP, false, false, 0).int(2);
        w.0.extend_from_slice(&[7, 9]);
        let o = unserialize(&w.0).unwrap();
        let RValue::List(items) = o.value else {
            panic!()
        };
        assert_eq!(items[0].value, RValue::Real(vec![1.5]));
        assert_eq!(items[1].value, RValue::Logical(vec![1, 0]));
        assert_eq!(items[2].value, RValue::Raw(vec![7, 9]));
    }

    #[test]
    fn compact_intseq_altrep() {
        let mut w = W::header(3);
        w.flags(ALTREP_SXP, false, false, 0);
        w.flags(LISTSXP, false, false, 0).sym("compact_intseq");
        w.flags(LISTSXP, false, false, 0).sym("base");
        w.flags(LISTSXP, false, false, 0);
        w.flags(INTSXP, false, false, 0).int(1).int(13).nil();
        w.flags(REALSXP, false, false, 0).int(3);
        for x in [4.0f64, 1.0, 1.0] {
            w.0.extend_from_slice(&x.to_be_bytes());
        }
        w.nil();
        let o = unserialize(&w.0).unwrap();
        assert_eq!(o.value, RValue::Integer(vec![1, 2, 3, 4]));
    }

    /// Lists nested `depth` deep around a character vector.
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut w = W::header(2);
        for _ in 0..depth {
            w.flags(VECSXP, false, false, 0).int(1);
        }
        w.strs(&[Some("leaf")], false);
        w.0
    }

    /// The deepest accepted nesting parses on a thread with three quarters of a spawned
    /// thread's default stack (2 MB), and one level more is refused, never a stack overflow.
    #[test]
    fn deepest_accepted_nesting_fits_a_small_stack() {
        let parsed = std::thread::Builder::new()
            .stack_size(1536 * 1024)
            .spawn(|| {
                (
                    unserialize(&nested_lists(MAX_DEPTH - 1)).is_ok(),
                    unserialize(&nested_lists(MAX_DEPTH)).is_err(),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(parsed, (true, true));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut good = W::header(3);
        good.strs(&[Some("hello"), Some("world")], false);
        let good = good.0;
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(unserialize(&good[..n]).is_err(), "prefix {n}");
        }
        // Huge announced lengths fail before allocating.
        for ty in [STRSXP, INTSXP, REALSXP, VECSXP, RAWSXP, CPLXSXP] {
            let mut w = W::header(2);
            w.flags(ty, false, false, 0).int(i32::MAX);
            assert!(unserialize(&w.0).is_err());
            let mut w = W::header(2);
            w.flags(ty, false, false, 0)
                .int(-1)
                .int(0x7fff_ffff)
                .int(-1);
            assert!(unserialize(&w.0).is_err());
        }
        // Bad references, unknown types, deep nesting, bad headers.
        let mut w = W::header(2);
        w.int((5 << 8 | REFSXP) as i32);
        assert!(unserialize(&w.0).is_err());
        let mut w = W::header(2);
        w.int(99);
        assert!(unserialize(&w.0).is_err());
        let mut w = W::header(2);
        for _ in 0..10_000 {
            w.flags(VECSXP, false, false, 0).int(1);
        }
        assert!(unserialize(&w.0).is_err());
        assert!(unserialize(b"A\n1\n").is_err());
        assert!(unserialize(b"garbage garbage").is_err());
        // A huge compact sequence is refused.
        let mut w = W::header(3);
        w.flags(ALTREP_SXP, false, false, 0);
        w.flags(LISTSXP, false, false, 0)
            .sym("compact_intseq")
            .nil();
        w.flags(REALSXP, false, false, 0).int(3);
        for x in [1e12f64, 1.0, 1.0] {
            w.0.extend_from_slice(&x.to_be_bytes());
        }
        w.nil();
        assert!(unserialize(&w.0).is_err());
        // Pseudo-random garbage after a valid header never panics.
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut w = W::header(3);
            let n = (state % 64) as usize;
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                w.0.push(if state.is_multiple_of(3) {
                    0
                } else {
                    state as u8
                });
            }
            let _ = unserialize(&w.0);
        }
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = (payload.len() as u32).to_be_bytes().to_vec();
        r.extend(zlib(payload));
        r
    }

    /// A two-variable lazy-load database built by hand, like R's makeLazyLoadDB writes it.
    fn tiny_db(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
        let mut a = W::header(3);
        a.strs(&[Some("line one"), Some(""), Some("line three")], false);
        let mut b = W::header(3);
        b.strs(&[Some("B")], false);
        let (ra, rb) = (record(&a.0), record(&b.0));
        let mut rdb = ra.clone();
        rdb.extend(&rb);
        let mut idx = W::header(3);
        idx.flags(VECSXP, true, false, 0).int(3);
        idx.flags(VECSXP, true, false, 0).int(2);
        idx.flags(INTSXP, false, false, 0)
            .int(2)
            .int(0)
            .int(ra.len() as i32);
        idx.flags(INTSXP, false, false, 0)
            .int(2)
            .int(ra.len() as i32)
            .int(rb.len() as i32);
        idx.flags(LISTSXP, false, true, 0).sym("names");
        idx.strs(&[Some("alpha"), Some("beta")], false).nil();
        idx.flags(VECSXP, false, false, 0).int(0);
        idx.flags(LGLSXP, false, false, 0).int(1).int(1);
        idx.flags(LISTSXP, false, true, 0)
            .int((1 << 8 | REFSXP) as i32);
        idx.strs(
            &[Some("variables"), Some("references"), Some("compressed")],
            false,
        )
        .nil();
        let rdx_path = dir.join("Rdata.rdx");
        let rdb_path = dir.join("Rdata.rdb");
        std::fs::write(&rdx_path, gzip(&idx.0)).unwrap();
        std::fs::write(&rdb_path, &rdb).unwrap();
        (rdx_path, rdb_path, rdb)
    }

    #[test]
    fn lazy_load_db_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let (rdx, rdb, _) = tiny_db(t.path());
        let db = LazyLoadDb::open(&rdx, &rdb).unwrap();
        assert_eq!(db.names(), vec!["alpha", "beta"]);
        assert_eq!(
            db.get("alpha").unwrap().value,
            RValue::Character(vec![
                Some("line one".into()),
                Some(String::new()),
                Some("line three".into())
            ])
        );
        assert_eq!(
            db.get("beta").unwrap().value,
            RValue::Character(vec![Some("B".into())])
        );
        assert!(db.get("gamma").is_err());
    }

    #[test]
    fn truncated_or_garbage_rdb_records_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let (rdx, rdb, bytes) = tiny_db(t.path());
        // Truncated file: the first record lies beyond the end.
        std::fs::write(&rdb, &bytes[..10]).unwrap();
        let db = LazyLoadDb::open(&rdx, &rdb).unwrap();
        let e = db.get("alpha").unwrap_err().to_string();
        assert!(e.contains("beyond the end"), "{e}");
        // Garbage of the right length.
        std::fs::write(&rdb, vec![0xabu8; bytes.len()]).unwrap();
        assert!(db.get("alpha").is_err());
        assert!(db.get("beta").is_err());
        // Record whose zlib stream is cut short.
        let mut a = W::header(3);
        a.strs(&[Some("some text here")], false);
        let r = record(&a.0);
        assert!(decompress_record(&r[..r.len() - 3], 1).is_err());
        // Announced length wrong.
        let mut r2 = r.clone();
        r2[3] = r2[3].wrapping_add(1);
        assert!(decompress_record(&r2, 1).is_err());
        // Too short to hold the length.
        assert!(decompress_record(&[0, 1], 1).is_err());
        // Stored (type 2, '0') record round-trips.
        let mut stored = (a.0.len() as u32).to_be_bytes().to_vec();
        stored.push(b'0');
        stored.extend(&a.0);
        assert_eq!(decompress_record(&stored, 2).unwrap(), a.0);
        // Garbage index.
        std::fs::write(&rdx, b"\x1f\x8bnot really gzip").unwrap();
        assert!(LazyLoadDb::open(&rdx, &rdb).is_err());
    }
}
