//! Text to token ids: a `tokenizer.json` (BERT WordPiece and any other Hugging Face
//! tokenizer), or a byte-level BPE built from a GGUF file's vocabulary and merges; and the
//! padded [`TokenBatch`] the models take.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{CandleContext, ModelError, Result};
use crate::gguf::GgufFile;

/// A batch of token sequences, right-padded to the longest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// `ids[b]` has `seq_len()` ids; padding positions hold `pad_id`.
    pub ids: Vec<Vec<u32>>,
    /// `valid[b][t]`: token `t` of sequence `b` is real.
    pub valid: Vec<Vec<bool>>,
    /// Real tokens per sequence.
    pub lengths: Vec<usize>,
    /// Id written into padding positions.
    pub pad_id: u32,
}

impl TokenBatch {
    /// Pads `sequences` on the right with `pad_id`. Fails on an empty batch or an empty
    /// sequence.
    pub fn from_sequences(sequences: Vec<Vec<u32>>, pad_id: u32) -> Result<Self> {
        if sequences.is_empty() {
            return Err(ModelError::Input("empty batch".into()));
        }
        if let Some(i) = sequences.iter().position(Vec::is_empty) {
            return Err(ModelError::Input(format!(
                "sequence {i} of the batch has no token"
            )));
        }
        let n = sequences.iter().map(Vec::len).max().unwrap_or(0);
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let valid = lengths
            .iter()
            .map(|&l| (0..n).map(|t| t < l).collect())
            .collect();
        let ids = sequences
            .into_iter()
            .map(|mut s| {
                s.resize(n, pad_id);
                s
            })
            .collect();
        Ok(Self {
            ids,
            valid,
            lengths,
            pad_id,
        })
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.ids.len()
    }

    /// Padded length.
    pub fn seq_len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// The ids as a `[batch, seq]` `u32` tensor.
    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        let flat: Vec<u32> = self.ids.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (self.batch_size(), self.seq_len()), device).op("token ids")
    }

    /// Checks that the padded length (in tokens) fits a model with `limit` positions.
    pub fn check_len(&self, limit: usize) -> Result<()> {
        let s = self.seq_len();
        if s > limit {
            return Err(ModelError::Input(format!(
                "{s} tokens exceed the model's {limit} positions"
            )));
        }
        Ok(())
    }

    /// The positions `0..seq` as a `[seq]` `u32` tensor (absolute position ids).
    pub fn positions_tensor(&self, device: &Device) -> Result<Tensor> {
        Tensor::arange(0u32, self.seq_len() as u32, device).op("positions")
    }
}

/// A tokenizer plus the special tokens the model expects around each text.
#[derive(Clone, Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
    source: String,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    pad_id: u32,
}

fn tok_err(source: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer {
        source_name: source.to_string(),
        message: e.to_string(),
    }
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`. If it defines `[CLS]` and `[SEP]` (BERT
    /// WordPiece) each text becomes `[CLS] ... [SEP]` and `[PAD]` pads; otherwise nothing is
    /// added and id 0 pads. Truncation and padding settings stored in the file are ignored
    /// (see [`TextTokenizer::encode`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        if !path.is_file() {
            return Err(tok_err(&source, "file not found"));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| tok_err(&source, e))?;
        inner
            .with_truncation(None)
            .map_err(|e| tok_err(&source, e))?;
        inner.with_padding(None);
        let id = |t: &str| inner.token_to_id(t);
        let (prefix, suffix, pad_id) = match (id("[CLS]"), id("[SEP]")) {
            (Some(cls), Some(sep)) => (vec![cls], vec![sep], id("[PAD]").unwrap_or(0)),
            _ => (Vec::new(), Vec::new(), 0),
        };
        Ok(Self {
            inner,
            source,
            prefix,
            suffix,
            pad_id,
        })
    }

    /// Builds the byte-level BPE of a GGUF file (`tokenizer.ggml.model = "gpt2"`) from its
    /// `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`. Pre-tokenisation is llama.cpp's
    /// `smollm` / GPT-2 scheme: every digit on its own, then the GPT-2 regex and byte-level
    /// mapping. Control tokens (type 3) are special tokens matched verbatim in the text.
    /// A BOS token is prepended only if `tokenizer.ggml.add_bos_token` is true; padding uses
    /// `tokenizer.ggml.padding_token_id` (else EOS, else 0).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let source = format!("GGUF metadata of {}", file.path().display());
        let err = |m: String| tok_err(&source, m);
        let model = file.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer.ggml.model is `{model}`; only byte-level BPE (`gpt2`) is supported"
            )));
        }
        if let Ok(pre) = file.meta_str("tokenizer.ggml.pre")
            && !matches!(pre.as_str(), "smollm" | "gpt-2" | "default")
        {
            return Err(err(format!(
                "tokenizer.ggml.pre is `{pre}`; supported: smollm, gpt-2, default"
            )));
        }
        let digits_alone = file
            .meta_str("tokenizer.ggml.pre")
            .is_ok_and(|p| p == "smollm");
        let tokens = file.meta_strings("tokenizer.ggml.tokens")?;
        let merges_raw = file.meta_strings("tokenizer.ggml.merges")?;
        let types = file.meta_u32s("tokenizer.ggml.token_type").ok();
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| err(format!("merge {i} `{m}` is not two tokens")))?;
            merges.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        if digits_alone {
            inner.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        } else {
            inner.with_pre_tokenizer(Some(byte_level));
        }
        inner.with_decoder(Some(ByteLevel::default()));
        if let Some(types) = &types {
            let specials: Vec<AddedToken> = types
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == 3)
                .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
                .collect();
            inner
                .add_special_tokens(specials)
                .map_err(|e| err(e.to_string()))?;
        }
        let opt_id = |k: &str| file.meta_u32(k).ok();
        let add_bos = file
            .meta_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(false);
        let prefix = match (add_bos, opt_id("tokenizer.ggml.bos_token_id")) {
            (true, Some(b)) => vec![b],
            _ => Vec::new(),
        };
        let pad_id = opt_id("tokenizer.ggml.padding_token_id")
            .or_else(|| opt_id("tokenizer.ggml.eos_token_id"))
            .unwrap_or(0);
        Ok(Self {
            inner,
            source,
            prefix,
            suffix: Vec::new(),
            pad_id,
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of a token string, if in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids of `text` without any added special token.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err(&self.source, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of `text` with the model's special tokens (e.g. `[CLS] ... [SEP]`), the text part
    /// cut from the right so that the whole is at most `max_len` ids (no limit if `None`).
    pub fn encode(&self, text: &str, max_len: Option<usize>) -> Result<Vec<u32>> {
        let mut body = self.encode_plain(text)?;
        let extra = self.prefix.len() + self.suffix.len();
        if let Some(max) = max_len {
            if max <= extra {
                return Err(ModelError::Input(format!(
                    "max_len {max} leaves no room for text next to {extra} special tokens"
                )));
            }
            body.truncate(max - extra);
        }
        let mut ids = Vec::with_capacity(body.len() + extra);
        ids.extend_from_slice(&self.prefix);
        ids.extend(body);
        ids.extend_from_slice(&self.suffix);
        Ok(ids)
    }

    /// Encodes every text ([`TextTokenizer::encode`]) and pads them into a batch.
    pub fn encode_batch(&self, texts: &[&str], max_len: Option<usize>) -> Result<TokenBatch> {
        let seqs = texts
            .iter()
            .map(|t| self.encode(t, max_len))
            .collect::<Result<Vec<_>>>()?;
        TokenBatch::from_sequences(seqs, self.pad_id)
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(&self.source, e))
    }
}
