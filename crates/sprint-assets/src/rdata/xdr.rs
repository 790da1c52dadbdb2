//! The reader of R's serialisation format (XDR, versions 2 and 3): [`unserialize`].

use crate::AssetError;

use super::object::{NA_INTEGER, RObject, RValue};

/// Deepest nesting of values accepted. The packages read here nest under 12 levels; each
/// level is one recursion of the reader (about 18 KB of stack unoptimised, a few KB
/// optimised), so 64 keeps the deepest accepted input under 2 MB of stack, a spawned
/// thread's default, at any optimisation level.
pub const MAX_DEPTH: usize = 64;
/// Most elements an ALTREP compact sequence may expand to.
pub const MAX_COMPACT_SEQ: usize = 1 << 24;

/// A malformed-input error ([`AssetError::RData`]).
pub(super) fn err(detail: impl Into<String>) -> AssetError {
    AssetError::RData(detail.into())
}

// Type codes of R's serialize.c.
pub(super) const NILSXP: u32 = 0;
pub(super) const SYMSXP: u32 = 1;
pub(super) const LISTSXP: u32 = 2;
pub(super) const CLOSXP: u32 = 3;
pub(super) const ENVSXP: u32 = 4;
pub(super) const PROMSXP: u32 = 5;
pub(super) const LANGSXP: u32 = 6;
pub(super) const SPECIALSXP: u32 = 7;
pub(super) const BUILTINSXP: u32 = 8;
pub(super) const CHARSXP: u32 = 9;
pub(super) const LGLSXP: u32 = 10;
pub(super) const INTSXP: u32 = 13;
pub(super) const REALSXP: u32 = 14;
pub(super) const CPLXSXP: u32 = 15;
pub(super) const STRSXP: u32 = 16;
pub(super) const DOTSXP: u32 = 17;
pub(super) const VECSXP: u32 = 19;
pub(super) const EXPRSXP: u32 = 20;
pub(super) const BCODESXP: u32 = 21;
pub(super) const EXTPTRSXP: u32 = 22;
pub(super) const WEAKREFSXP: u32 = 23;
pub(super) const RAWSXP: u32 = 24;
pub(super) const S4SXP: u32 = 25;
pub(super) const ALTREP_SXP: u32 = 238;
pub(super) const ATTRLISTSXP: u32 = 239;
pub(super) const ATTRLANGSXP: u32 = 240;
pub(super) const BASEENV_SXP: u32 = 241;
pub(super) const EMPTYENV_SXP: u32 = 242;
pub(super) const BCREPREF: u32 = 243;
pub(super) const BCREPDEF: u32 = 244;
pub(super) const GENERICREFSXP: u32 = 245;
pub(super) const CLASSREFSXP: u32 = 246;
pub(super) const PERSISTSXP: u32 = 247;
pub(super) const PACKAGESXP: u32 = 248;
pub(super) const NAMESPACESXP: u32 = 249;
pub(super) const BASENAMESPACE_SXP: u32 = 250;
pub(super) const MISSINGARG_SXP: u32 = 251;
pub(super) const UNBOUNDVALUE_SXP: u32 = 252;
pub(super) const GLOBALENV_SXP: u32 = 253;
pub(super) const NILVALUE_SXP: u32 = 254;
pub(super) const REFSXP: u32 = 255;

pub(super) const HAS_ATTR_BIT: u32 = 1 << 9;
pub(super) const HAS_TAG_BIT: u32 = 1 << 10;
pub(super) const LATIN1_MASK: u32 = 1 << 2;
pub(super) const BYTES_MASK: u32 = 1 << 1;

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

    /// The object a reference (`REFSXP`) points to: its index is in the flags, or in the
    /// next integer when the flags hold 0.
    fn reference(&mut self, f: &Flags) -> Result<RObject, AssetError> {
        let idx = match f.raw >> 8 {
            0 => self.i32()? as i64,
            i => i as i64,
        };
        let i = usize::try_from(idx - 1).map_err(|_| err("bad reference index"))?;
        self.refs
            .get(i)
            .cloned()
            .ok_or_else(|| err(format!("reference {idx} to an unknown object")))
    }

    fn item_with(&mut self, f: Flags) -> Result<RObject, AssetError> {
        if let Some(name) = special_value(f.ty) {
            return Ok(RObject::new(RValue::Other(name)));
        }
        let value = match f.ty {
            NILVALUE_SXP => return Ok(RObject::new(RValue::Null)),
            REFSXP => return self.reference(&f),
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

/// The name of a special value with no content (`emptyenv`, `globalenv`, ...) by its type
/// code; `None` for any other type.
fn special_value(ty: u32) -> Option<&'static str> {
    Some(match ty {
        EMPTYENV_SXP => "emptyenv",
        BASEENV_SXP => "baseenv",
        GLOBALENV_SXP => "globalenv",
        UNBOUNDVALUE_SXP => "unbound",
        MISSINGARG_SXP => "missing",
        BASENAMESPACE_SXP => "namespace:base",
        _ => return None,
    })
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
