//! The real models and data sets `sprint` uses, pinned by package version and sha256
//! (see docs/assets.md). Each asset is extracted into its own folder of the cache:
//! `<cache>/<asset id>/`, complete only once the marker file [`COMPLETE_MARKER`] exists.
//!
//! The cache folder is `$SPRINT_CACHE` if set, else `$XDG_CACHE_HOME/sprint`, else
//! `~/.cache/sprint`.
//!
//! - [`fetch()`] downloads an asset's pinned package with the ordinary client (pip, npm,
//!   apt-get), checks its sha256, extracts only the needed files into a staging folder,
//!   renames it into place and writes the marker last; [`status()`] reports what is there.
//! - [`data`] reads the data sets into plain Rust values; [`data::split`] makes seeded
//!   train/test splits.
//! - [`rdata`] is a small, bounds-checked reader for R serialisations and lazy-load
//!   databases (the Austen novels are stored that way).

pub mod data;
mod extract;
pub mod fetch;
#[cfg(test)]
mod fetch_tests;
pub mod marker;
pub mod package;
pub mod rdata;
pub mod status_text;

use std::path::{Path, PathBuf};

pub use fetch::{AssetStatus, FetchEvent, FetchOutcome, State, fetch, status};
pub use package::{Member, Package, Registry, WheelTarget};

/// File written last into an asset folder; its presence means the extraction completed.
pub const COMPLETE_MARKER: &str = ".complete";

/// Every asset `sprint` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Asset {
    /// all-MiniLM-L6-v2 (BERT family): `model.safetensors`, `config.json`, `tokenizer.json`.
    MiniLm,
    /// SmolLM2-135M-Instruct: `SmolLM2-135M-Instruct.Q4_1.gguf`.
    SmolLm2,
    /// BBC News, 5 topics: `<topic>/NNN.txt`.
    Bbc,
    /// SpamAssassin public corpus: `<folder>/*.txt` (raw RFC 822).
    SpamAssassin,
    /// Moby Dick: `data.txt`.
    MobyDick,
    /// State of the Union addresses: `YYYY_president_name_party.txt`.
    Sotu,
    /// Jane Austen's novels: `Rdata.rdb`, `Rdata.rdx`.
    Austen,
    /// Pang & Lee polarity and Lee similarity data from the gensim wheel.
    GensimData,
}

impl Asset {
    /// All assets.
    pub const ALL: [Asset; 8] = [
        Asset::MiniLm,
        Asset::SmolLm2,
        Asset::Bbc,
        Asset::SpamAssassin,
        Asset::MobyDick,
        Asset::Sotu,
        Asset::Austen,
        Asset::GensimData,
    ];

    /// Stable identifier, used as the cache folder name and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Asset::MiniLm => "minilm",
            Asset::SmolLm2 => "smollm2",
            Asset::Bbc => "bbc",
            Asset::SpamAssassin => "spamassassin",
            Asset::MobyDick => "moby-dick",
            Asset::Sotu => "sotu",
            Asset::Austen => "austen",
            Asset::GensimData => "gensim-data",
        }
    }

    /// Parses an identifier.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// Parses an identifier, with an error listing the known ones.
    pub fn parse(id: &str) -> Result<Self, AssetError> {
        Self::from_id(id).ok_or_else(|| AssetError::UnknownAsset {
            given: id.to_string(),
            known: Self::ALL.map(Asset::id).join(", "),
        })
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Asset::MiniLm => "all-MiniLM-L6-v2 sentence encoder (safetensors + tokenizer)",
            Asset::SmolLm2 => "SmolLM2-135M-Instruct causal LM (GGUF Q4_1)",
            Asset::Bbc => "BBC News, 2225 articles in 5 topics",
            Asset::SpamAssassin => "SpamAssassin public corpus, 4150 ham / 1896 spam",
            Asset::MobyDick => "Moby Dick, plain text",
            Asset::Sotu => "State of the Union addresses 1790-2021 (233)",
            Asset::Austen => "Jane Austen's six novels (R lazy-load database)",
            Asset::GensimData => "Pang & Lee polarity (200 sentences) and Lee similarity data",
        }
    }
}

impl std::fmt::Display for Asset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

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

/// Assets of at most this many extracted bytes are sha256-checked in full each time a
/// command opens them ([`Cache::require`]); larger ones (the models) only by file sizes,
/// and in full by `sprint assets status --verify`. Bytes.
pub const VERIFY_AT_OPEN_BYTES: u64 = 32 << 20;

/// The asset cache folder.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default cache: `$SPRINT_CACHE`, else `$XDG_CACHE_HOME/sprint`, else `~/.cache/sprint`.
    pub fn from_env() -> Self {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = env("SPRINT_CACHE")
            .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("sprint")))
            .or_else(|| env("HOME").map(|p| p.join(".cache").join("sprint")))
            .unwrap_or_else(|| PathBuf::from(".sprint-cache"));
        Self { root }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder of `asset` (whether or not it is present).
    pub fn dir(&self, asset: Asset) -> PathBuf {
        self.root.join(asset.id())
    }

    /// True when `asset` is fully extracted: its marker exists and names the pinned
    /// package sha256 (an asset extracted from an older pin counts as absent).
    pub fn is_present(&self, asset: Asset) -> bool {
        marker::read_header(&self.dir(asset)).is_ok_and(|h| h.sha256 == asset.package().sha256)
    }

    /// Folder of the per-asset lock files (`<cache>/.locks`).
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks")
    }

    /// Folder of staging areas and downloads in progress (`<cache>/.staging`); anything in
    /// it is a leftover of an unfinished fetch and is removed by the next fetch.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(".staging")
    }

    /// Folder of `asset`, or an error naming the command that fetches it. What is used is
    /// checked cheaply first: every file of the manifest must have its recorded size, and
    /// an asset of at most [`VERIFY_AT_OPEN_BYTES`] (the data sets) is hashed in full
    /// against the manifest; a damaged asset is an error naming `sprint assets fetch --force`.
    pub fn require(&self, asset: Asset) -> Result<PathBuf, AssetError> {
        if !self.is_present(asset) {
            return Err(AssetError::Missing {
                id: asset.id(),
                cache: self.root.clone(),
            });
        }
        let dir = self.dir(asset);
        let damaged = |problem: String| AssetError::Damaged {
            id: asset.id(),
            problem,
        };
        let (header, entries) = marker::read(&dir).map_err(|e| damaged(e.to_string()))?;
        fetch::check_files(&dir, &entries, header.bytes <= VERIFY_AT_OPEN_BYTES)
            .map_err(damaged)?;
        Ok(dir)
    }

    /// Path of `file` inside `asset`, checked to exist.
    pub fn require_file(&self, asset: Asset, file: &str) -> Result<PathBuf, AssetError> {
        let p = self.require(asset)?.join(file);
        if p.exists() {
            Ok(p)
        } else {
            Err(AssetError::MissingFile {
                id: asset.id(),
                path: p,
            })
        }
    }
}
