//! Extraction of the selected members of a package file (wheel = zip, npm = gzip tar,
//! Debian = ar archive holding `data.tar.{xz,zst,gz}`) into a folder, hashing each file as
//! it is written.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::marker::ManifestEntry;
use crate::package::Member;

/// The container format of a package file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    /// A zip file (Python wheel).
    Zip,
    /// A gzip-compressed tar (npm package).
    TarGz,
    /// A Debian package: `ar` archive with `data.tar.{xz,zst,gz}` or `data.tar`.
    Deb,
}

/// What can go wrong while extracting.
#[derive(Debug)]
pub(crate) enum ExtractError {
    /// The archive is malformed, truncated, or lacks expected members.
    Archive(String),
    /// Writing to the destination failed.
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn archive_err(e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Archive(e.to_string())
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// sha256 (hex) and size of a file, read in a streaming way.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// Where member `name` of the package goes inside the asset folder, if it is wanted.
/// Returns the index of the matching member rule and the relative destination.
pub(crate) fn target(members: &[Member], name: &str) -> Option<(usize, String)> {
    let name = name.strip_prefix("./").unwrap_or(name);
    for (i, m) in members.iter().enumerate() {
        match *m {
            Member::File { from, to } if name == from => return Some((i, to.to_string())),
            Member::Tree { from, suffix, .. } => {
                if let Some(rest) = name.strip_prefix(from)
                    && rest.ends_with(suffix)
                    && rest.len() > suffix.len()
                {
                    return Some((i, rest.to_string()));
                }
            }
            _ => {}
        }
    }
    None
}

/// True when `rel` is a safe relative path: `/`-separated normal components only.
pub(crate) fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0', ':']))
}

/// Collects extracted files and checks the member rules against them.
struct Sink<'a> {
    members: &'a [Member],
    dest: &'a Path,
    found: Vec<usize>,
    seen: BTreeSet<String>,
    entries: Vec<ManifestEntry>,
    progress: &'a mut dyn FnMut(usize, usize),
    total: usize,
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> Sink<'a> {
    fn new(
        members: &'a [Member],
        dest: &'a Path,
        progress: &'a mut dyn FnMut(usize, usize),
    ) -> Self {
        let total = crate::package::Package::file_count_of(members);
        Sink {
            members,
            dest,
            found: vec![0; members.len()],
            seen: BTreeSet::new(),
            entries: Vec::new(),
            progress,
            total,
        }
    }

    /// Writes member `name` (if wanted) from `reader`.
    fn offer(&mut self, name: &str, reader: &mut dyn Read) -> Result<(), ExtractError> {
        let Some((rule, rel)) = target(self.members, name) else {
            return Ok(());
        };
        if !is_safe_relative(&rel) {
            return Err(archive_err(format!("unsafe member path `{name}`")));
        }
        if !self.seen.insert(rel.clone()) {
            return Err(archive_err(format!("member `{name}` appears twice")));
        }
        let path = self.dest.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ExtractError::Io {
                op: "create folder",
                path: parent.to_path_buf(),
                source: e,
            })?;
        }
        let file = File::create(&path).map_err(|e| ExtractError::Io {
            op: "create",
            path: path.clone(),
            source: e,
        })?;
        let mut w = HashWriter {
            inner: BufWriter::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            n: 0,
        };
        // Errors while reading are archive errors (truncated, bad checksum); errors while
        // writing are I/O errors. std::io::copy mixes both, so copy by hand.
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_err(format!("member `{name}`: {e}"))),
            };
            w.write_all(&buf[..k]).map_err(|e| ExtractError::Io {
                op: "write",
                path: path.clone(),
                source: e,
            })?;
        }
        w.flush().map_err(|e| ExtractError::Io {
            op: "write",
            path: path.clone(),
            source: e,
        })?;
        self.found[rule] += 1;
        self.entries.push(ManifestEntry {
            path: rel,
            size: w.n,
            sha256: hex(&w.hasher.finalize()),
        });
        let done = self.entries.len();
        if done.is_multiple_of(250) || done == self.total {
            (self.progress)(done, self.total);
        }
        Ok(())
    }

    /// Checks that every member rule was satisfied exactly.
    fn finish(mut self) -> Result<Vec<ManifestEntry>, ExtractError> {
        for (m, &n) in self.members.iter().zip(&self.found) {
            match *m {
                Member::File { from, .. } if n != 1 => {
                    return Err(archive_err(format!("expected file `{from}` not found")));
                }
                Member::Tree {
                    from,
                    suffix,
                    count,
                } if n != count => {
                    return Err(archive_err(format!(
                        "expected {count} `*{suffix}` files below `{from}`, found {n}"
                    )));
                }
                _ => {}
            }
        }
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.entries)
    }
}

fn extract_tar<R: Read>(reader: R, sink: &mut Sink<'_>) -> Result<(), ExtractError> {
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = match entry.path() {
            Ok(p) => match p.to_str() {
                Some(s) => s.to_string(),
                None => continue, // non-UTF-8 names are never wanted
            },
            Err(e) => return Err(archive_err(e)),
        };
        sink.offer(&name, &mut entry)?;
    }
    // Read the compressed stream to its end so that its trailer (gzip CRC, xz index and
    // footer) is checked: a truncated package must not pass.
    let mut rest = ar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(archive_err)?;
    Ok(())
}

fn extract_zip(file: File, sink: &mut Sink<'_>) -> Result<(), ExtractError> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(archive_err)?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(archive_err)?;
        if !f.is_file() {
            continue;
        }
        let name = f.name().map_err(archive_err)?.to_string();
        sink.offer(&name, &mut f)?;
    }
    Ok(())
}

fn extract_deb(file: File, sink: &mut Sink<'_>) -> Result<(), ExtractError> {
    let mut ar = ar::Archive::new(BufReader::new(file));
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(archive_err)?;
        let id = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        let Some(compression) = id.strip_prefix("data.tar") else {
            continue;
        };
        let entry = BufReader::new(entry);
        match compression {
            "" => extract_tar(entry, sink)?,
            ".gz" => extract_tar(flate2::read::GzDecoder::new(entry), sink)?,
            ".xz" => extract_tar(lzma_rust2::XzReader::new(entry, true), sink)?,
            ".zst" => {
                let dec = ruzstd::decoding::StreamingDecoder::new(entry)
                    .map_err(|e| archive_err(format!("{id}: {e}")))?;
                extract_tar(dec, sink)?
            }
            other => {
                return Err(archive_err(format!(
                    "unsupported Debian data archive compression `{other}`"
                )));
            }
        }
        return Ok(());
    }
    Err(archive_err("no data.tar member in the Debian package"))
}

/// Extracts the files selected by `members` from `archive` into `dest` (which must exist),
/// reporting `(files done, files expected)` now and then. Returns the manifest, sorted by
/// path. Fails if any selected file is missing or the archive is damaged.
pub(crate) fn extract(
    kind: ArchiveKind,
    archive: &Path,
    members: &[Member],
    dest: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ManifestEntry>, ExtractError> {
    let file = File::open(archive).map_err(|e| ExtractError::Io {
        op: "read",
        path: archive.to_path_buf(),
        source: e,
    })?;
    let mut sink = Sink::new(members, dest, progress);
    match kind {
        ArchiveKind::Zip => extract_zip(file, &mut sink)?,
        ArchiveKind::TarGz => extract_tar(
            flate2::read::GzDecoder::new(BufReader::new(file)),
            &mut sink,
        )?,
        ArchiveKind::Deb => extract_deb(file, &mut sink)?,
    }
    sink.finish()
}

/// Checks the extracted files of `entries` in `dir`: sizes, and sha256 with `verify`.
/// The error names the file and the problem.
pub(crate) fn check_files(
    dir: &Path,
    entries: &[ManifestEntry],
    verify: bool,
) -> Result<(), String> {
    for e in entries {
        let p = dir.join(&e.path);
        let size = match std::fs::metadata(&p) {
            Ok(m) => m.len(),
            Err(err) => return Err(format!("{}: {err}", e.path)),
        };
        if size != e.size {
            return Err(format!("{}: {size} bytes, expected {}", e.path, e.size));
        }
        if verify {
            let (sha, _) = sha256_file(&p).map_err(|err| format!("{}: {err}", e.path))?;
            if sha != e.sha256 {
                return Err(format!("{}: content changed (sha256 {sha})", e.path));
            }
        }
    }
    Ok(())
}
