//! Output files written safely, shared by every command and library that writes one:
//!
//! - [`write_atomic`]: the content goes to a hidden temporary file next to the target,
//!   which is synced and renamed over the target only once complete; on error it is removed.
//! - A process-wide registry of the temporary files in flight, so that a signal handler
//!   (installed by the command-line tool) can remove them with [`remove_pending_and_exit`] before
//!   the process exits: an interrupted run leaves only complete files.
//! - [`check_outputs`]: before any work starts, every output path must be creatable
//!   (its folder exists and is a folder, the path is not a folder) and distinct from every
//!   input and from every other output.
//! - [`check_threads`]: the worker-thread count a user may ask for.
//! - [`one_line`]: an error message cut to one line, without embedded backtraces.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CoreError, Result};

/// Largest worker-thread count accepted by `--threads` (threads).
pub const MAX_THREADS: usize = 256;

/// Temporary files being written by this process, removed by [`remove_pending_and_exit`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file registered for removal on a signal; removed on drop unless
/// [`PendingFile::persist`] renamed it over its target.
pub struct PendingFile {
    tmp: PathBuf,
    done: bool,
}

impl PendingFile {
    /// Registers a fresh temporary path next to `target` (`.NAME.tmp-PID-N` in the same
    /// folder); nothing is created on disk yet.
    pub fn new(target: &Path) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = target
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = target.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        pending().push(tmp.clone());
        Self { tmp, done: false }
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Creates (truncates) the temporary file. Done under the registry lock, so that a
    /// signal handler in [`remove_pending_and_exit`] never races with it.
    pub fn create(&self) -> std::io::Result<File> {
        let _guard = pending();
        File::create(&self.tmp)
    }

    /// Renames the temporary file over `target` (under the registry lock); errors name
    /// `target`.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        let guard = pending();
        std::fs::rename(&self.tmp, target).map_err(|source| CoreError::Io {
            path: target.to_path_buf(),
            source,
        })?;
        drop(guard);
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        let mut p = pending();
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
        if let Some(i) = p.iter().position(|x| *x == self.tmp) {
            p.swap_remove(i);
        }
    }
}

/// Removes every temporary file still being written and exits the process with `code`,
/// holding the registry lock so that no other thread creates or renames one meanwhile:
/// what remains on disk is complete files only. For a signal handler thread.
pub fn remove_pending_and_exit(code: i32) -> ! {
    let p = pending();
    for t in p.iter() {
        let _ = std::fs::remove_file(t);
    }
    std::process::exit(code)
}

/// Writes `path` atomically: `write` fills a buffered temporary file next to it, which is
/// synced and renamed over `path` once complete. On error (or signal, see
/// [`remove_pending_and_exit`]) the temporary file is removed and `path` is left untouched. Errors
/// name `path`, never the temporary file.
pub fn write_atomic<E>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    E: From<CoreError>,
{
    let io = |source: std::io::Error| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = PendingFile::new(path);
    let file = tmp.create().map_err(io)?;
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    drop(file);
    tmp.persist(path)?;
    Ok(())
}

/// The path as the user gave it, with `.` / `..` and symbolic links of its folder resolved
/// when that folder exists (so that `a/../x` and `./x` compare equal).
fn normalised(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (parent.canonicalize(), p.file_name()) {
        (Ok(d), Some(n)) => d.join(n),
        _ => p.to_path_buf(),
    }
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_a: &Path, _b: &Path) -> bool {
    false
}

/// Entries of a folder input looked at for hard links of an output (a bound: the asset
/// cache and model folders hold a few thousand files).
const MAX_LINK_SCAN: usize = 100_000;

/// True when the existing file `out` is a hard link of a file inside folder `dir` (up to
/// three levels deep, at most [`MAX_LINK_SCAN`] entries): writing it would change that
/// file too, or break the link silently.
fn linked_into(out: &Path, dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::metadata(out) else {
            return false;
        };
        if m.nlink() < 2 {
            return false;
        }
        let mut stack = vec![(dir.to_path_buf(), 0)];
        let mut seen = 0;
        while let Some((d, depth)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > MAX_LINK_SCAN {
                    return false;
                }
                let Ok(em) = e.metadata() else { continue };
                if em.is_dir() {
                    if depth < 3 {
                        stack.push((e.path(), depth + 1));
                    }
                } else if em.dev() == m.dev() && em.ino() == m.ino() {
                    return true;
                }
            }
        }
        false
    }
    #[cfg(not(unix))]
    {
        let _ = (out, dir);
        false
    }
}

/// True when `a` and `b` name the same file (same normalised path, or the same inode when
/// both exist, e.g. through a hard link).
pub fn same_path(a: &Path, b: &Path) -> bool {
    normalised(a) == normalised(b) || same_file(a, b)
}

/// Checks, before any work starts, that every output can be written and clobbers nothing
/// it must not: each `(flag, path)` of `outputs` must not be a folder, its folder must
/// exist, and it must differ from every input (`(flag, path)` of `inputs`; a folder input
/// covers the files inside it) and from every other output. The error names both flags and
/// the user's path, in one line.
pub fn check_outputs(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<()> {
    let bad = |flag: &str, p: &Path, m: String| {
        Err(CoreError::usage(format!("{flag} {}", p.display()), m))
    };
    for (i, (flag, out)) in outputs.iter().enumerate() {
        if out.as_os_str().is_empty() {
            return bad(flag, out, "empty path".into());
        }
        if out.is_dir() {
            return bad(flag, out, "is a folder; give a file name".into());
        }
        let parent = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return bad(
                flag,
                out,
                format!("folder {} does not exist", parent.display()),
            );
        }
        if std::fs::metadata(&parent).is_ok_and(|m| m.permissions().readonly()) {
            return bad(
                flag,
                out,
                format!("folder {} is read-only", parent.display()),
            );
        }
        for (iflag, input) in inputs {
            let inside = input.is_dir()
                && (normalised(out).starts_with(normalised(input)) || linked_into(out, input));
            if same_path(out, input) || inside {
                return bad(
                    flag,
                    out,
                    format!(
                        "is the input {iflag} {}; refusing to overwrite an input",
                        input.display()
                    ),
                );
            }
        }
        for (oflag, other) in &outputs[..i] {
            if same_path(out, other) {
                return bad(
                    flag,
                    out,
                    format!("is also the output of {oflag}; give distinct files"),
                );
            }
        }
    }
    Ok(())
}

/// Validates a `--threads` value: 0 means all cores; at most [`MAX_THREADS`].
pub fn check_threads(n: usize) -> Result<usize> {
    if n > MAX_THREADS {
        return Err(CoreError::usage(
            format!("--threads {n}"),
            format!("exceeds the limit of {MAX_THREADS} worker threads (0 = all cores)"),
        ));
    }
    Ok(n)
}

/// An error message on one line: whitespace runs collapsed, embedded backtraces (as some
/// libraries append when `RUST_BACKTRACE` is set) dropped, and an OS error text repeated
/// by nested contexts (`a: No such file (os error 2): No such file (os error 2)`) kept once.
pub fn one_line(msg: &str) -> String {
    // A backtrace (std's `Display`) is lines `   N: frame` and `      at file:line`,
    // indented; messages themselves start at column 0 or are continuation lines.
    let is_frame = |line: &str| {
        let t = line.trim_start();
        let indented = t.len() < line.len();
        let numbered = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        (indented && (numbered || t.starts_with("at ")))
            || t.starts_with("stack backtrace:")
            || t.starts_with("Stack backtrace:")
            || t.starts_with("note: Some details are omitted")
    };
    let kept: Vec<&str> = msg
        .lines()
        .filter(|l| !is_frame(l))
        .map(str::trim)
        .collect();
    let s = kept
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // std's text for a short read says nothing about the file; say what it means.
    let s = s.replace(
        "failed to fill whole buffer",
        "unexpected end of file (truncated?)",
    );
    let mut s = s;
    // Drop a duplicated trailing OS error ("X (os error N): X (os error N)").
    while let Some(pos) = s.rfind(": ") {
        let tail = s[pos + 2..].to_string();
        if tail.is_empty() || !s[..pos].ends_with(&tail) {
            break;
        }
        s.truncate(pos);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_backtraces_and_repeats() {
        let m = "cannot read x: No such file or directory (os error 2): No such file or directory (os error 2)";
        assert_eq!(
            one_line(m),
            "cannot read x: No such file or directory (os error 2)"
        );
        let bt = "gguf: bad magic\nstack backtrace:\n   0: candle::error::Error::bt\n             at /x/y.rs:1:2\n   1: main\nnote: Some details are omitted";
        assert_eq!(one_line(bt), "gguf: bad magic");
    }

    #[test]
    fn outputs_must_differ_from_inputs_and_each_other() {
        let dir = tempfile_dir();
        let a = dir.join("a.bin");
        std::fs::write(&a, b"x").unwrap();
        let b = dir.join("b.bin");
        let e = check_outputs(&[("--input", &a)], &[("--out", &a)]).unwrap_err();
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        let dotted = dir.join(".").join("a.bin");
        assert!(check_outputs(&[("--input", &a)], &[("--out", &dotted)]).is_err());
        let e = check_outputs(&[], &[("--out", &b), ("--trace", &b)]).unwrap_err();
        assert!(e.to_string().contains("also the output of --out"), "{e}");
        assert!(check_outputs(&[("--input", &a)], &[("--out", &b)]).is_ok());
        let e = check_outputs(&[], &[("--out", &dir.join("no/such/x"))]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_leaves_nothing_on_error() {
        let dir = tempfile_dir();
        let p = dir.join("out.txt");
        let r: Result<()> = write_atomic(&p, |_| Err(CoreError::config("x", "boom")));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        write_atomic::<CoreError>(&p, |w| {
            use std::io::Write;
            w.write_all(b"hello").map_err(|source| CoreError::Io {
                path: p.clone(),
                source,
            })
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(pending().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "sprint-outfile-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
