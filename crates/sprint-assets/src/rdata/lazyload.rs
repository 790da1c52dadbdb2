//! R lazy-load databases (`.rdx` index + `.rdb` records) and the decompression of their
//! records and index.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::AssetError;

use super::object::{RObject, RValue};
use super::xdr::{err, unserialize};

/// Largest decompressed size accepted for one record or index (bytes).
pub const MAX_DECOMPRESSED: usize = 1 << 30;

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
