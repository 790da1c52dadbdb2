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

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::AssetError;

/// Largest decompressed size accepted for one record or index (bytes).
pub const MAX_DECOMPRESSED: usize = 1 << 30;
/// Deepest nesting of values accepted. The packages read here nest under 12 levels; each
/// level is one recursion of the reader (about 18 KB of stack unoptimised, a few KB
/// optimised), so 64 keeps the deepest accepted input under 2 MB of stack, a spawned
/// thread's default, at any optimisation level.
pub const MAX_DEPTH: usize = 64;
/// Most elements an ALTREP compact sequence may expand to.
pub const MAX_COMPACT_SEQ: usize = 1 << 24;

/// The integer NA of R (`NA_integer_`, also the logical NA).
pub const NA_INTEGER: i32 = i32::MIN;

/// An R value with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct RObject {
    /// The value.
    pub value: RValue,
    /// Attributes in stored order (`names`, `class`, `dim`, ...).
    pub attributes: Vec<(String, RObject)>,
}

/// The value part of an [`RObject`].
#[derive(Clone, Debug, PartialEq)]
pub enum RValue {
    /// `NULL`.
    Null,
    /// A symbol (name).
    Symbol(String),
    /// A pairlist, call or `...` list: `(tag, value)` pairs.
    Pairlist(Vec<(Option<String>, RObject)>),
    /// A logical vector: 0, 1 or [`NA_INTEGER`].
    Logical(Vec<i32>),
    /// An integer vector; NA is [`NA_INTEGER`].
    Integer(Vec<i32>),
    /// A double vector.
    Real(Vec<f64>),
    /// A complex vector as `(re, im)`.
    Complex(Vec<(f64, f64)>),
    /// A character vector; `None` is `NA_character_`.
    Character(Vec<Option<String>>),
    /// A generic vector (list) or expression vector.
    List(Vec<RObject>),
    /// A raw vector.
    Raw(Vec<u8>),
    /// Something read but not represented (environment, closure, namespace, external
    /// pointer, S4 object, builtin, ...), with R's name of its kind.
    Other(&'static str),
}

impl RObject {
    fn new(value: RValue) -> Self {
        RObject {
            value,
            attributes: Vec::new(),
        }
    }

    /// The attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&RObject> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `names` attribute as strings (`NA` names become empty strings).
    pub fn names(&self) -> Option<Vec<String>> {
        match &self.attr("names")?.value {
            RValue::Character(v) => Some(v.iter().map(|s| s.clone().unwrap_or_default()).collect()),
            _ => None,
        }
    }

    /// The element of a named list (or the value of a tagged pairlist) called `name`.
    pub fn get(&self, name: &str) -> Option<&RObject> {
        match &self.value {
            RValue::List(items) => {
                let names = self.names()?;
                names
                    .iter()
                    .position(|n| n == name)
                    .and_then(|i| items.get(i))
            }
            RValue::Pairlist(items) => items
                .iter()
                .find(|(t, _)| t.as_deref() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Number of elements (0 for `NULL` and non-vectors).
    pub fn len(&self) -> usize {
        match &self.value {
            RValue::Null | RValue::Symbol(_) | RValue::Other(_) => 0,
            RValue::Pairlist(v) => v.len(),
            RValue::Logical(v) | RValue::Integer(v) => v.len(),
            RValue::Real(v) => v.len(),
            RValue::Complex(v) => v.len(),
            RValue::Character(v) => v.len(),
            RValue::List(v) => v.len(),
            RValue::Raw(v) => v.len(),
        }
    }

    /// True when [`RObject::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Numbers of an integer, logical or double vector as `f64` (NA as NaN).
    pub fn as_f64s(&self) -> Option<Vec<f64>> {
        match &self.value {
            RValue::Integer(v) | RValue::Logical(v) => Some(
                v.iter()
                    .map(|&x| if x == NA_INTEGER { f64::NAN } else { x as f64 })
                    .collect(),
            ),
            RValue::Real(v) => Some(v.clone()),
            _ => None,
        }
    }
}

fn err(detail: impl Into<String>) -> AssetError {
    AssetError::RData(detail.into())
}

// Type codes of R's serialize.c.
const NILSXP: u32 = 0;
const SYMSXP: u32 = 1;
const LISTSXP: u32 = 2;
const CLOSXP: u32 = 3;
const ENVSXP: u32 = 4;
const PROMSXP: u32 = 5;
const LANGSXP: u32 = 6;
const SPECIALSXP: u32 = 7;
const BUILTINSXP: u32 = 8;
const CHARSXP: u32 = 9;
const LGLSXP: u32 = 10;
const INTSXP: u32 = 13;
const REALSXP: u32 = 14;
const CPLXSXP: u32 = 15;
const STRSXP: u32 = 16;
const DOTSXP: u32 = 17;
const VECSXP: u32 = 19;
const EXPRSXP: u32 = 20;
const BCODESXP: u32 = 21;
const EXTPTRSXP: u32 = 22;
const WEAKREFSXP: u32 = 23;
const RAWSXP: u32 = 24;
const S4SXP: u32 = 25;
const ALTREP_SXP: u32 = 238;
const ATTRLISTSXP: u32 = 239;
const ATTRLANGSXP: u32 = 240;
const BASEENV_SXP: u32 = 241;
const EMPTYENV_SXP: u32 = 242;
const BCREPREF: u32 = 243;
const BCREPDEF: u32 = 244;
const GENERICREFSXP: u32 = 245;
const CLASSREFSXP: u32 = 246;
const PERSISTSXP: u32 = 247;
const PACKAGESXP: u32 = 248;
const NAMESPACESXP: u32 = 249;
const BASENAMESPACE_SXP: u32 = 250;
const MISSINGARG_SXP: u32 = 251;
const UNBOUNDVALUE_SXP: u32 = 252;
const GLOBALENV_SXP: u32 = 253;
const NILVALUE_SXP: u32 = 254;
const REFSXP: u32 = 255;

const HAS_ATTR_BIT: u32 = 1 << 9;
const HAS_TAG_BIT: u32 = 1 << 10;
const LATIN1_MASK: u32 = 1 << 2;
const BYTES_MASK: u32 = 1 << 1;

struct Flags {
    ty: u32,
    levels: u32,
    has_attr: bool,
    has_tag: bool,
    raw: u32,
}

fn flags(raw: u32) -> Flags {
    Flags {
        ty: raw & 0xff,
        levels: raw >> 12,
        has_attr: raw & HAS_ATTR_BIT != 0,
        has_tag: raw & HAS_TAG_BIT != 0,
        raw,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    refs: Vec<RObject>,
    depth: usize,
    native_latin1: bool,
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], AssetError> {
        if n > self.remaining() {
            return Err(err(format!(
                "truncated: need {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, AssetError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, AssetError> {
        Ok(self.u32()? as i32)
    }

    fn f64(&mut self) -> Result<f64, AssetError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    /// A vector length (`-1` announces a 64-bit length in two words).
    fn length(&mut self) -> Result<usize, AssetError> {
        let n = self.i32()?;
        if n >= 0 {
            return Ok(n as usize);
        }
        if n != -1 {
            return Err(err(format!("negative length {n}")));
        }
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        usize::try_from((hi << 32) | lo).map_err(|_| err("length too large"))
    }

    /// Checks that `n` elements of at least `size` bytes each can still be read.
    fn check_room(&self, n: usize, size: usize, what: &str) -> Result<(), AssetError> {
        match n.checked_mul(size) {
            Some(total) if total <= self.remaining() => Ok(()),
            _ => Err(err(format!(
                "{what} of length {n} does not fit in the {} bytes left",
                self.remaining()
            ))),
        }
    }

    fn header(&mut self) -> Result<(), AssetError> {
        let fmt = self.bytes(2)?;
        match fmt {
            b"X\n" => {}
            b"A\n" => return Err(err("ASCII serialisation is not supported (only XDR)")),
            b"B\n" => {
                return Err(err(
                    "native binary serialisation is not supported (only XDR)",
                ));
            }
            _ => return Err(err("not an R serialisation (no `X\\n` header)")),
        }
        let version = self.i32()?;
        let _writer = self.i32()?;
        let _min_reader = self.i32()?;
        match version {
            2 => {}
            3 => {
                let n = self.length()?;
                if n > 64 {
                    return Err(err(format!("native encoding name of {n} bytes")));
                }
                let enc = self.bytes(n)?;
                let enc = String::from_utf8_lossy(enc).to_ascii_lowercase();
                self.native_latin1 = enc.contains("latin1") || enc.contains("8859-1");
            }
            v => return Err(err(format!("serialisation version {v} (expected 2 or 3)"))),
        }
        Ok(())
    }

    fn charsxp(&mut self, f: &Flags) -> Result<Option<String>, AssetError> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(err(format!("string of negative length {n}")));
        }
        let b = self.bytes(n as usize)?;
        let s = if f.levels & LATIN1_MASK != 0 {
            latin1(b)
        } else if f.levels & BYTES_MASK != 0 {
            String::from_utf8_lossy(b).into_owned()
        } else {
            match std::str::from_utf8(b) {
                Ok(s) => s.to_string(),
                Err(_) if self.native_latin1 => latin1(b),
                Err(_) => String::from_utf8_lossy(b).into_owned(),
            }
        };
        Ok(Some(s))
    }

    fn symbol_name(obj: &RObject) -> Option<String> {
        match &obj.value {
            RValue::Symbol(s) => Some(s.clone()),
            RValue::Character(v) if v.len() == 1 => v[0].clone(),
            _ => None,
        }
    }

    fn attributes(&mut self) -> Result<Vec<(String, RObject)>, AssetError> {
        let a = self.item()?;
        match a.value {
            RValue::Pairlist(items) => Ok(items
                .into_iter()
                .map(|(t, v)| (t.unwrap_or_default(), v))
                .collect()),
            RValue::Null => Ok(Vec::new()),
            _ => Err(err("attributes are not a pairlist")),
        }
    }

    fn item(&mut self) -> Result<RObject, AssetError> {
        if self.depth >= MAX_DEPTH {
            return Err(err(format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.depth += 1;
        let raw = self.u32()?;
        let r = self.item_with(flags(raw));
        self.depth -= 1;
        r
    }

    fn add_ref(&mut self, obj: RObject) -> Result<(), AssetError> {
        if self.refs.len() >= self.buf.len() {
            return Err(err("too many references"));
        }
        self.refs.push(obj);
        Ok(())
    }

    /// Reads a pairlist-like chain (LISTSXP, LANGSXP, DOTSXP, ...), iteratively along cdr.
    fn pairlist(&mut self, first: Flags) -> Result<RObject, AssetError> {
        let mut items = Vec::new();
        let mut attributes = Vec::new();
        let mut f = first;
        loop {
            if f.has_attr || f.ty == ATTRLISTSXP || f.ty == ATTRLANGSXP {
                let a = self.attributes()?;
                if items.is_empty() {
                    attributes = a;
                }
            }
            let tag = if f.has_tag {
                let t = self.item()?;
                Self::symbol_name(&t)
            } else {
                None
            };
            let car = self.item()?;
            items.push((tag, car));
            // cdr: continue along the chain while it is another node.
            let raw = self.u32()?;
            let next = flags(raw);
            match next.ty {
                NILVALUE_SXP | NILSXP => break,
                LISTSXP | LANGSXP | DOTSXP | ATTRLISTSXP | ATTRLANGSXP => f = next,
                _ => {
                    // A dotted pair: keep the cdr as an untagged last element.
                    self.depth += 1;
                    if self.depth >= MAX_DEPTH {
                        return Err(err(format!("nesting deeper than {MAX_DEPTH}")));
                    }
                    let cdr = self.item_with(next);
                    self.depth -= 1;
                    items.push((None, cdr?));
                    break;
                }
            }
        }
        Ok(RObject {
            value: RValue::Pairlist(items),
            attributes,
        })
    }

    fn altrep(&mut self) -> Result<RObject, AssetError> {
        let info = self.item()?;
        let state = self.item()?;
        let attributes = self.attributes()?;
        let class = match &info.value {
            RValue::Pairlist(items) => items.first().and_then(|(_, v)| Self::symbol_name(v)),
            _ => None,
        }
        .ok_or_else(|| err("ALTREP object without a class"))?;
        let value = match class.as_str() {
            "compact_intseq" | "compact_realseq" => {
                let s = state
                    .as_f64s()
                    .filter(|s| s.len() == 3)
                    .ok_or_else(|| err(format!("{class}: bad state")))?;
                let (n, start, step) = (s[0], s[1], s[2]);
                if !(n >= 0.0
                    && n <= MAX_COMPACT_SEQ as f64
                    && start.is_finite()
                    && step.is_finite())
                {
                    return Err(err(format!("{class}: bad or too long sequence (n = {n})")));
                }
                let n = n as usize;
                if class == "compact_intseq" {
                    let mut v = Vec::with_capacity(n);
                    for i in 0..n {
                        let x = start + step * i as f64;
                        if x.abs() > i32::MAX as f64 {
                            return Err(err("compact_intseq: value out of range"));
                        }
                        v.push(x as i32);
                    }
                    RValue::Integer(v)
                } else {
                    RValue::Real((0..n).map(|i| start + step * i as f64).collect())
                }
            }
            c if c.starts_with("wrap_") => match state.value {
                RValue::List(mut items) if !items.is_empty() => items.swap_remove(0).value,
                _ => return Err(err(format!("{class}: bad state"))),
            },
            "deferred_string" => {
                let arg = match state.value {
                    RValue::Pairlist(mut items) if !items.is_empty() => items.swap_remove(0).1,
                    _ => return Err(err("deferred_string: bad state")),
                };
                match arg.value {
                    RValue::Integer(v) => RValue::Character(
                        v.iter()
                            .map(|&x| (x != NA_INTEGER).then(|| x.to_string()))
                            .collect(),
                    ),
                    _ => return Err(err("deferred_string of non-integers is not supported")),
                }
            }
            other => return Err(err(format!("unsupported ALTREP class `{other}`"))),
        };
        Ok(RObject { value, attributes })
    }

    /// A length, then that many elements of `elem_bytes` bytes each, read by `read`; the
    /// length is checked against the bytes that remain before anything is allocated.
    fn vector<T>(
        &mut self,
        elem_bytes: usize,
        what: &str,
        mut read: impl FnMut(&mut Self) -> Result<T, AssetError>,
    ) -> Result<Vec<T>, AssetError> {
        let n = self.length()?;
        self.check_room(n, elem_bytes, what)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(read(self)?);
        }
        Ok(v)
    }

    /// An atomic vector (character, logical, integer, double, complex, raw). Kept out of
    /// [`Self::item_with`] so that the recursion through nested lists carries small frames
    /// (unoptimised, every arm's temporaries share the one frame).
    #[inline(never)]
    fn atomic(&mut self, f: &Flags) -> Result<RValue, AssetError> {
        Ok(match f.ty {
            CHARSXP => RValue::Character(vec![self.charsxp(f)?]),
            LGLSXP | INTSXP => {
                let v = self.vector(4, "integer vector", Self::i32)?;
                if f.ty == LGLSXP {
                    RValue::Logical(v)
                } else {
                    RValue::Integer(v)
                }
            }
            REALSXP => RValue::Real(self.vector(8, "double vector", Self::f64)?),
            CPLXSXP => {
                RValue::Complex(self.vector(16, "complex vector", |r| Ok((r.f64()?, r.f64()?)))?)
            }
            STRSXP => {
                let n = self.length()?;
                self.check_room(n, 8, "character vector")?;
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let ef = flags(self.u32()?);
                    if ef.ty != CHARSXP {
                        return Err(err(format!(
                            "element {i} of a character vector has type {}",
                            ef.ty
                        )));
                    }
                    v.push(self.charsxp(&ef)?);
                    if ef.has_attr {
                        self.attributes()?;
                    }
                }
                RValue::Character(v)
            }
            RAWSXP => {
                let n = self.length()?;
                RValue::Raw(self.bytes(n)?.to_vec())
            }
            t => return Err(err(format!("type {t} is not an atomic vector"))),
        })
    }

    fn item_with(&mut self, f: Flags) -> Result<RObject, AssetError> {
        let value = match f.ty {
            NILVALUE_SXP => return Ok(RObject::new(RValue::Null)),
            EMPTYENV_SXP => return Ok(RObject::new(RValue::Other("emptyenv"))),
            BASEENV_SXP => return Ok(RObject::new(RValue::Other("baseenv"))),
            GLOBALENV_SXP => return Ok(RObject::new(RValue::Other("globalenv"))),
            UNBOUNDVALUE_SXP => return Ok(RObject::new(RValue::Other("unbound"))),
            MISSINGARG_SXP => return Ok(RObject::new(RValue::Other("missing"))),
            BASENAMESPACE_SXP => return Ok(RObject::new(RValue::Other("namespace:base"))),
            REFSXP => {
                let idx = match f.raw >> 8 {
                    0 => self.i32()? as i64,
                    i => i as i64,
                };
                let i = usize::try_from(idx - 1).map_err(|_| err("bad reference index"))?;
                return self
                    .refs
                    .get(i)
                    .cloned()
                    .ok_or_else(|| err(format!("reference {idx} to an unknown object")));
            }
            PERSISTSXP => return Err(err("persistent references are not supported")),
            SYMSXP => {
                let name = self.item()?;
                let s = match name.value {
                    RValue::Character(mut v) if v.len() == 1 => {
                        v.pop().flatten().unwrap_or_default()
                    }
                    _ => return Err(err("symbol name is not a string")),
                };
                let obj = RObject::new(RValue::Symbol(s));
                self.add_ref(obj.clone())?;
                return Ok(obj);
            }
            PACKAGESXP | NAMESPACESXP => {
                if self.i32()? != 0 {
                    return Err(err("namespace/package info: unexpected flag"));
                }
                let n = self.length()?;
                self.check_room(n, 4, "namespace info")?;
                for _ in 0..n {
                    self.item()?;
                }
                let obj = RObject::new(RValue::Other(if f.ty == PACKAGESXP {
                    "package"
                } else {
                    "namespace"
                }));
                self.add_ref(obj.clone())?;
                return Ok(obj);
            }
            ENVSXP => {
                let _locked = self.i32()?;
                let obj = RObject::new(RValue::Other("environment"));
                self.add_ref(obj.clone())?;
                let _enclos = self.item()?;
                let _frame = self.item()?;
                let _hashtab = self.item()?;
                let _attrib = self.item()?;
                return Ok(obj);
            }
            LISTSXP | LANGSXP | DOTSXP | ATTRLISTSXP | ATTRLANGSXP => return self.pairlist(f),
            CLOSXP | PROMSXP => {
                if f.has_attr {
                    self.attributes()?;
                }
                if f.has_tag {
                    self.item()?;
                }
                self.item()?;
                self.item()?;
                return Ok(RObject::new(RValue::Other(if f.ty == CLOSXP {
                    "closure"
                } else {
                    "promise"
                })));
            }
            EXTPTRSXP => {
                let obj = RObject::new(RValue::Other("externalptr"));
                self.add_ref(obj.clone())?;
                self.item()?;
                self.item()?;
                obj.value
            }
            WEAKREFSXP => {
                let obj = RObject::new(RValue::Other("weakref"));
                self.add_ref(obj.clone())?;
                obj.value
            }
            SPECIALSXP | BUILTINSXP => {
                let n = self.length()?;
                self.bytes(n)?;
                RValue::Other("builtin")
            }
            CHARSXP | LGLSXP | INTSXP | REALSXP | CPLXSXP | STRSXP => self.atomic(&f)?,
            VECSXP | EXPRSXP => {
                let n = self.length()?;
                self.check_room(n, 4, "list")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.item()?);
                }
                RValue::List(v)
            }
            RAWSXP => self.atomic(&f)?,
            S4SXP => RValue::Other("S4"),
            ALTREP_SXP => return self.altrep(),
            NILSXP => RValue::Null,
            BCODESXP | BCREPREF | BCREPDEF | GENERICREFSXP | CLASSREFSXP => {
                return Err(err(format!(
                    "byte code and class references (type {}) are not supported",
                    f.ty
                )));
            }
            t => return Err(err(format!("unknown type code {t}"))),
        };
        let attributes = if f.has_attr {
            self.attributes()?
        } else {
            Vec::new()
        };
        Ok(RObject { value, attributes })
    }
}

/// Reads one serialised R value (XDR format, version 2 or 3, uncompressed).
pub fn unserialize(bytes: &[u8]) -> Result<RObject, AssetError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        refs: Vec::new(),
        depth: 0,
        native_latin1: false,
    };
    r.header()?;
    r.item()
}

fn read_bounded<R: Read>(reader: R, limit: usize, what: &str) -> Result<Vec<u8>, AssetError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(format!("{what}: {e}")))?;
    if out.len() > limit {
        return Err(err(format!(
            "{what}: decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// Undoes the compression of an `.rds` or `.rdx` file: gzip, zlib, xz or none (detected
/// from the magic bytes). At most [`MAX_DECOMPRESSED`] bytes.
pub fn decompress_any(bytes: &[u8]) -> Result<Vec<u8>, AssetError> {
    match bytes {
        [0x1f, 0x8b, ..] => read_bounded(
            flate2::read::MultiGzDecoder::new(bytes),
            MAX_DECOMPRESSED,
            "gzip",
        ),
        [0x78, b, ..] if (0x78u16 * 256 + *b as u16).is_multiple_of(31) => read_bounded(
            flate2::read::ZlibDecoder::new(bytes),
            MAX_DECOMPRESSED,
            "zlib",
        ),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => read_bounded(
            lzma_rust2::XzReader::new(bytes, true),
            MAX_DECOMPRESSED,
            "xz",
        ),
        _ => Ok(bytes.to_vec()),
    }
}

/// Decodes one lazy-load record: 4-byte big-endian uncompressed length, then the stream
/// as `compression` says (1: zlib; 2 or 3: a type byte `Z`, `0` or `X`, then the stream;
/// 0: the serialisation as is). The result must have exactly the announced length.
pub fn decompress_record(record: &[u8], compression: i32) -> Result<Vec<u8>, AssetError> {
    if compression == 0 {
        return Ok(record.to_vec());
    }
    if record.len() < 4 {
        return Err(err(format!(
            "record of {} bytes is truncated",
            record.len()
        )));
    }
    let n = u32::from_be_bytes([record[0], record[1], record[2], record[3]]) as usize;
    if n > MAX_DECOMPRESSED {
        return Err(err(format!(
            "record announces {n} bytes, more than allowed"
        )));
    }
    let body = &record[4..];
    let out = match compression {
        1 => read_bounded(flate2::read::ZlibDecoder::new(body), n, "zlib record")?,
        2 | 3 => {
            let (&ty, stream) = body
                .split_first()
                .ok_or_else(|| err("record lacks its compression type byte"))?;
            match ty {
                b'Z' => read_bounded(flate2::read::ZlibDecoder::new(stream), n, "zlib record")?,
                b'0' => stream.to_vec(),
                b'X' => read_bounded(lzma_rust2::XzReader::new(stream, true), n, "xz record")?,
                b'2' => return Err(err("bzip2-compressed records are not supported")),
                t => return Err(err(format!("unknown record compression type {t:#04x}"))),
            }
        }
        c => return Err(err(format!("unknown compression setting {c}"))),
    };
    if out.len() != n {
        return Err(err(format!(
            "record decompresses to {} bytes, announced {n} (truncated or corrupt)",
            out.len()
        )));
    }
    Ok(out)
}

/// An R lazy-load database: the index of an `.rdx` file and the path of its `.rdb` file.
#[derive(Clone, Debug)]
pub struct LazyLoadDb {
    rdb: std::path::PathBuf,
    variables: Vec<(String, u64, u64)>,
    compression: i32,
}

impl LazyLoadDb {
    /// Reads the index `rdx`; records are read from `rdb` on demand.
    pub fn open(rdx: &Path, rdb: &Path) -> Result<Self, AssetError> {
        let bytes = std::fs::read(rdx).map_err(|e| AssetError::io("read", rdx, e))?;
        Self::from_index(&bytes, rdb).map_err(|e| AssetError::Format {
            path: rdx.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Parses index bytes (as stored in an `.rdx` file).
    pub fn from_index(rdx_bytes: &[u8], rdb: &Path) -> Result<Self, AssetError> {
        let index = unserialize(&decompress_any(rdx_bytes)?)?;
        let vars = index
            .get("variables")
            .ok_or_else(|| err("index has no `variables`"))?;
        let names = vars.names().unwrap_or_default();
        let RValue::List(items) = &vars.value else {
            return Err(err("index `variables` is not a list"));
        };
        if names.len() != items.len() {
            return Err(err("index `variables` is not fully named"));
        }
        let mut variables = Vec::with_capacity(items.len());
        for (name, item) in names.into_iter().zip(items) {
            let pos = item
                .as_f64s()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| err(format!("index entry `{name}` is not (offset, length)")))?;
            if !(pos[0] >= 0.0 && pos[1] >= 0.0 && pos[0] < 2f64.powi(53) && pos[1] < 2f64.powi(53))
            {
                return Err(err(format!("index entry `{name}` has a bad position")));
            }
            variables.push((name, pos[0] as u64, pos[1] as u64));
        }
        let compression = match index.get("compressed").map(|c| &c.value) {
            None => 1,
            Some(RValue::Logical(v)) | Some(RValue::Integer(v)) if v.len() == 1 => v[0],
            Some(RValue::Real(v)) if v.len() == 1 => v[0] as i32,
            Some(_) => return Err(err("index `compressed` is not a single value")),
        };
        if !(0..=3).contains(&compression) {
            return Err(err(format!("index `compressed` = {compression}")));
        }
        Ok(LazyLoadDb {
            rdb: rdb.to_path_buf(),
            variables,
            compression,
        })
    }

    /// Names of the variables, in index order.
    pub fn names(&self) -> Vec<&str> {
        self.variables.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Reads and decodes the value of variable `name`.
    pub fn get(&self, name: &str) -> Result<RObject, AssetError> {
        let &(_, offset, length) = self
            .variables
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| AssetError::Format {
                path: self.rdb.clone(),
                detail: format!("no variable `{name}` in the index"),
            })?;
        let fmt = |e: AssetError| AssetError::Format {
            path: self.rdb.clone(),
            detail: format!("variable `{name}`: {e}"),
        };
        let mut f =
            std::fs::File::open(&self.rdb).map_err(|e| AssetError::io("read", &self.rdb, e))?;
        let size = f
            .metadata()
            .map_err(|e| AssetError::io("read", &self.rdb, e))?
            .len();
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(fmt(err(format!(
                "record at {offset}+{length} lies beyond the end of the file ({size} bytes)"
            ))));
        }
        let mut record = vec![0u8; length as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut record))
            .map_err(|e| AssetError::io("read", &self.rdb, e))?;
        let bytes = decompress_record(&record, self.compression).map_err(fmt)?;
        unserialize(&bytes).map_err(fmt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
