//! The asset cache folder: where it is, which assets are complete in it, and the checked
//! folder of an asset a command opens.

use std::path::{Path, PathBuf};

use crate::asset::Asset;
use crate::error::AssetError;
use crate::extract::check_files;
use crate::marker;

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
        check_files(&dir, &entries, header.bytes <= VERIFY_AT_OPEN_BYTES).map_err(damaged)?;
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
