//! The evaluation tasks and the data each one reads: which texts, which labels, how texts
//! become passages, windows and prompts.

use serde::Serialize;
use sprint_assets::Cache;
use sprint_assets::data::{self, Document, LabeledCorpus, Novel};

use crate::error::{EvalError, Result};

/// Words per Austen passage of the `austen` attribution task.
pub const AUSTEN_PASSAGE_WORDS: usize = 200;

/// What a task measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Text classification with a linear probe on sentence embeddings (encoders).
    Probe,
    /// Perplexity of a causal LM over windows of a text (decoders).
    Perplexity,
    /// Zero-shot classification from next-token logits (decoders).
    ZeroShot,
}

/// An evaluation task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// BBC News 5-topic classification.
    Bbc,
    /// SpamAssassin ham/spam.
    Spam,
    /// Austen novel attribution of 200-word passages.
    Austen,
    /// SmolLM2 perplexity on the six Austen novels.
    PplAusten,
    /// Perplexity on Moby Dick.
    PplMoby,
    /// Perplexity on the State of the Union addresses.
    PplSotu,
    /// Zero-shot sentiment on Pang & Lee.
    Sentiment,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 7] = [
        Task::Bbc,
        Task::Spam,
        Task::Austen,
        Task::PplAusten,
        Task::PplMoby,
        Task::PplSotu,
        Task::Sentiment,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Bbc => "bbc",
            Task::Spam => "spam",
            Task::Austen => "austen",
            Task::PplAusten => "ppl-austen",
            Task::PplMoby => "ppl-moby",
            Task::PplSotu => "ppl-sotu",
            Task::Sentiment => "sentiment",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                EvalError::Input(format!(
                    "unknown task `{name}` (expected one of {})",
                    Self::ALL.map(Task::name).join(", ")
                ))
            })
    }

    /// What the task measures.
    pub fn kind(self) -> TaskKind {
        match self {
            Task::Bbc | Task::Spam | Task::Austen => TaskKind::Probe,
            Task::PplAusten | Task::PplMoby | Task::PplSotu => TaskKind::Perplexity,
            Task::Sentiment => TaskKind::ZeroShot,
        }
    }

    /// Default sequence length in tokens: 256 for the probes (truncation), 512 for the
    /// perplexity windows, 256 for sentiment prompts (truncation).
    pub fn default_seq_len(self) -> usize {
        match self.kind() {
            TaskKind::Perplexity => 512,
            _ => 256,
        }
    }

    /// Default `--limit` (items evaluated): all documents for the probes, 8 windows for
    /// perplexity, all sentences for sentiment.
    pub fn default_limit(self) -> Option<usize> {
        match self.kind() {
            TaskKind::Perplexity => Some(8),
            _ => None,
        }
    }

    /// Name of the unit the task evaluates (`documents`, `windows`, `sentences`).
    pub fn item_name(self) -> &'static str {
        match self.kind() {
            TaskKind::Probe => "documents",
            TaskKind::Perplexity => "windows",
            TaskKind::ZeroShot => "sentences",
        }
    }

    /// The metric's name.
    pub fn metric_name(self) -> &'static str {
        match self.kind() {
            TaskKind::Perplexity => "perplexity",
            _ => "accuracy",
        }
    }
}

/// Splits every novel into passages of exactly `words` whitespace-separated words (the
/// last, shorter passage of each novel is dropped), joined by single spaces; label = novel
/// (in the order of [`data::AUSTEN_NOVELS`]).
pub fn austen_passages(novels: &[Novel], words: usize) -> LabeledCorpus {
    let mut docs = Vec::new();
    for (label, novel) in novels.iter().enumerate() {
        let all: Vec<&str> = novel.text.split_whitespace().collect();
        for (i, chunk) in all.chunks_exact(words.max(1)).enumerate() {
            docs.push(Document {
                id: format!("{}:{}", novel.id, i),
                text: chunk.join(" "),
                label,
            });
        }
    }
    LabeledCorpus {
        labels: novels.iter().map(|n| n.title.to_string()).collect(),
        docs,
    }
}

/// The labelled corpus of a probe or zero-shot task.
pub fn labeled_corpus(task: Task, cache: &Cache) -> Result<LabeledCorpus> {
    Ok(match task {
        Task::Bbc => data::bbc(cache)?,
        Task::Spam => data::spam_assassin(cache)?,
        Task::Austen => austen_passages(&data::austen(cache)?, AUSTEN_PASSAGE_WORDS),
        Task::Sentiment => data::pang_lee(cache)?,
        other => {
            return Err(EvalError::Input(format!(
                "task `{}` has no labelled corpus",
                other.name()
            )));
        }
    })
}

/// The text a perplexity task scores: the six Austen novels in publication order, Moby
/// Dick, or the SOTU addresses in file-name (chronological) order; parts joined by a blank
/// line (`"\n\n"`).
pub fn perplexity_text(task: Task, cache: &Cache) -> Result<String> {
    let parts: Vec<String> = match task {
        Task::PplAusten => data::austen(cache)?.into_iter().map(|n| n.text).collect(),
        Task::PplMoby => vec![data::moby_dick(cache)?],
        Task::PplSotu => data::sotu(cache)?.into_iter().map(|s| s.text).collect(),
        other => {
            return Err(EvalError::Input(format!(
                "task `{}` is not a perplexity task",
                other.name()
            )));
        }
    };
    Ok(parts.join("\n\n"))
}

/// Non-overlapping windows of exactly `len` ids (a shorter tail is dropped).
pub fn windows(ids: &[u32], len: usize) -> Vec<&[u32]> {
    if len == 0 {
        return Vec::new();
    }
    ids.chunks_exact(len).collect()
}

/// The zero-shot sentiment prompt; the model's next token after it is compared between
/// [`SENTIMENT_POSITIVE`] and [`SENTIMENT_NEGATIVE`].
pub fn sentiment_prompt(sentence: &str) -> String {
    format!(
        "<|im_start|>user\nIs the sentiment of this movie review positive or negative?\n\nReview: {sentence}<|im_end|>\n<|im_start|>assistant\nThe sentiment is"
    )
}

/// Continuation scored for the positive label (its first token).
pub const SENTIMENT_POSITIVE: &str = " positive";
/// Continuation scored for the negative label (its first token).
pub const SENTIMENT_NEGATIVE: &str = " negative";

/// A seeded subset of `n` items of at most `limit` (all when `None` or `limit >= n`),
/// ascending.
pub fn subset(n: usize, limit: Option<usize>, seed: u64) -> Vec<usize> {
    match limit {
        Some(l) if l < n => {
            let mut p = data::permutation(n, seed ^ 0x5eed_0001);
            p.truncate(l);
            p.sort_unstable();
            p
        }
        _ => (0..n).collect(),
    }
}
