//! The perplexity tasks: a decoder's perplexity over non-overlapping windows of a text,
//! under each variant, calibrated on windows after the evaluated ones.

use sprint_assets::{Cache, data};
use sprint_models::TokenBatch;

use super::ctx::Ctx;
use super::pass::{HiddenOnly, PassResult, PassTotals};
use super::report::EvalReport;
use crate::calibrate::ScoreStats;
use crate::error::{EvalError, Result};
use crate::fidelity::{BLOCK_TOKENS, ItemOutputs, NextTokenLogits, token_kl};
use crate::metrics::{Perplexity, token_nll};
use crate::tasks::{perplexity_text, windows};

/// The perplexity windowing, stated in every report.
pub const WINDOWING: &str = "the text is tokenised once without BOS; each window is an independent sequence of exactly seq_len ids (no BOS prepended, the shorter tail is dropped); tokens 2..seq_len of each window are scored from their prefix inside the window; perplexity = exp(total NLL / scored tokens)";

impl Ctx<'_> {
    pub(super) fn perplexity(&self, cache: &Cache) -> Result<EvalReport> {
        let text = perplexity_text(self.opts.task, cache)?;
        let tok = self.model.tokenizer()?;
        self.progress.stage("tokenising", 1);
        let ids = tok.encode_plain(&text)?;
        self.progress.inc(1);
        let all = windows(&ids, self.seq_len);
        if all.is_empty() {
            return Err(EvalError::Input(format!(
                "the text has {} tokens, fewer than one window of {}",
                ids.len(),
                self.seq_len
            )));
        }
        let n_eval = self.limit.map_or(all.len(), |l| l.min(all.len()));
        let eval: Vec<&[u32]> = all[..n_eval].to_vec();
        if let Some(p) = &self.opts.dump_windows {
            self.dump_windows(p, &eval)?;
        }
        let (th, th_report) =
            self.thresholds(|items| self.calibration_windows(&all, n_eval, items, tok.pad_id()))?;
        // A pass that keeps its logits or compares them with others' is not kept for reuse.
        let plain = !self.opts.keep_next_token && self.opts.kl_references.is_empty();
        let memo = |_| plain.then(String::new);
        let (rows, tokens) = self.rows(&th, eval.len(), memo, |attn, trace| {
            let mut ppl = Perplexity::default();
            let mut totals = PassTotals::new(trace);
            // Per window, the summed NLL and scored tokens of each block of BLOCK_TOKENS
            // consecutive scored positions (the fidelity's block bootstrap).
            let per_window = (self.seq_len - 1).div_ceil(BLOCK_TOKENS);
            let mut blocks = vec![(0.0f64, 0u64); eval.len() * per_window];
            let refs = &self.opts.kl_references;
            let mut kl_blocks = vec![vec![(0.0f64, 0u64); blocks.len()]; refs.len()];
            let mut kept: Option<NextTokenLogits> =
                self.opts.keep_next_token.then(NextTokenLogits::default);
            // Scored positions so far, in pass order (the index into the references).
            let mut position = 0usize;
            self.decode_all(
                &eval,
                1,
                attn,
                &mut totals,
                |len| (0..len - 1).collect(),
                |w, p, row| {
                    let nll = token_nll(row, eval[w][p + 1] as usize);
                    ppl.add(nll);
                    let block = w * per_window + p / BLOCK_TOKENS;
                    let b = &mut blocks[block];
                    b.0 += nll;
                    b.1 += 1;
                    for (r, kb) in refs.iter().zip(&mut kl_blocks) {
                        let reference = r
                            .row(position)
                            .filter(|x| x.len() == row.len())
                            .ok_or_else(|| {
                                EvalError::Input(format!(
                                    "the next-token reference has {} positions of {} logits, not position {position} of {}",
                                    r.positions(),
                                    r.vocab,
                                    row.len()
                                ))
                            })?;
                        kb[block].0 += token_kl(reference, row);
                        kb[block].1 += 1;
                    }
                    if let Some(k) = &mut kept {
                        k.vocab = row.len();
                        k.logits.extend_from_slice(row);
                    }
                    position += 1;
                    Ok(())
                },
            )?;
            if refs.iter().any(|r| r.positions() != position) {
                return Err(EvalError::Input(format!(
                    "a next-token reference is not of these windows ({position} scored positions)"
                )));
            }
            Ok(PassResult {
                outputs: ItemOutputs {
                    nll_blocks: Some(blocks),
                    next_token: kept.map(std::sync::Arc::new),
                    kl_blocks: (!refs.is_empty()).then_some(kl_blocks),
                    ..Default::default()
                },
                metric: ppl.perplexity(),
                perplexity: Some(ppl),
                item_correct: None,
                totals,
            })
        })?;
        let split = format!(
            "first {n_eval} of {} non-overlapping {}-token windows ({} tokens in all); {WINDOWING}",
            all.len(),
            self.seq_len,
            ids.len()
        );
        Ok(self.report(eval.len(), tokens, split, th_report, None, rows))
    }

    /// Writes the token ids of the evaluated windows `eval` to `path` as JSON.
    fn dump_windows(&self, path: &std::path::Path, eval: &[&[u32]]) -> Result<()> {
        let json = serde_json::json!({
            "task": self.opts.task.name(),
            "seq_len": self.seq_len,
            "windowing": WINDOWING,
            "windows": eval,
        });
        sprint_core::outfile::write_atomic::<EvalError>(path, |w| {
            use std::io::Write;
            w.write_all(json.to_string().as_bytes())
                .map_err(|source| EvalError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        })
    }

    /// The calibration of a perplexity task: `items` (default 2) windows chosen among those
    /// of `all` after the first `n_eval` (the evaluated ones), run with the calibrator.
    fn calibration_windows(
        &self,
        all: &[&[u32]],
        n_eval: usize,
        items: Option<usize>,
        pad_id: u32,
    ) -> Result<(ScoreStats, String)> {
        let rest = all.len() - n_eval;
        if rest == 0 {
            return Err(EvalError::Input(format!(
                "all {} windows are evaluated: none is left to calibrate on (use --limit or --thresholds)",
                all.len()
            )));
        }
        let n = items.unwrap_or(2).min(rest).max(1);
        let mut order = data::permutation(rest, self.opts.seed ^ 0xca11_b000);
        order.truncate(n);
        order.sort_unstable();
        self.progress.stage("calibration windows", n as u64);
        let cal = self.calibrator();
        for &j in &order {
            let batch = TokenBatch::from_sequences(vec![all[n_eval + j].to_vec()], pad_id)?;
            self.model.model.logits_hidden_only(&batch, &cal)?;
            self.progress.inc(1);
        }
        let split = format!(
            "{n} windows chosen with seed {} among the {rest} windows after the evaluated ones",
            self.opts.seed
        );
        Ok((cal.into_stats(), split))
    }
}
