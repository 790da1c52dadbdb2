//! The assets `sprint` knows, by identifier (their pinned packages: [`crate::package`]).

use crate::error::AssetError;

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
