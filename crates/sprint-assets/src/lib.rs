//! The real models and data sets `sprint` uses, pinned by package version and sha256
//! (see docs/assets.md). Each asset is extracted into its own folder of the cache:
//! `<cache>/<asset id>/`, complete only once the marker file [`COMPLETE_MARKER`] exists.
//!
//! The cache folder is `$SPRINT_CACHE` if set, else `$XDG_CACHE_HOME/sprint`, else
//! `~/.cache/sprint`.

use std::path::{Path, PathBuf};

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
}

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

    /// True when `asset` is fully extracted.
    pub fn is_present(&self, asset: Asset) -> bool {
        self.dir(asset).join(COMPLETE_MARKER).is_file()
    }

    /// Folder of `asset`, or an error naming the command that fetches it.
    pub fn require(&self, asset: Asset) -> Result<PathBuf, AssetError> {
        if self.is_present(asset) {
            Ok(self.dir(asset))
        } else {
            Err(AssetError::Missing {
                id: asset.id(),
                cache: self.root.clone(),
            })
        }
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
