//! The zero-shot sentiment task: a decoder's next-token margin between the positive and
//! negative answer after a chat prompt, thresholded at its label-free dense median on
//! calibration sentences, scored under each variant.

use sprint_assets::{Cache, data};

use super::ctx::Ctx;
use super::options::SENTIMENT_CALIB_FRACTION;
use super::pass::{PassResult, PassTotals};
use super::report::EvalReport;
use crate::error::{EvalError, Result};
use crate::metrics::accuracy;
use crate::tasks::{
    SENTIMENT_NEGATIVE, SENTIMENT_POSITIVE, labeled_corpus, sentiment_prompt, subset,
};

impl Ctx<'_> {
    pub(super) fn zero_shot(&self, cache: &Cache) -> Result<EvalReport> {
        let corpus = labeled_corpus(self.opts.task, cache)?;
        let tok = self.model.tokenizer()?;
        let first_id = |s: &str| -> Result<usize> {
            tok.encode_plain(s)?
                .first()
                .map(|&i| i as usize)
                .ok_or_else(|| EvalError::Input(format!("`{s}` has no token")))
        };
        let neg = first_id(SENTIMENT_NEGATIVE)?;
        let pos = first_id(SENTIMENT_POSITIVE)?;
        let chosen = subset(corpus.docs.len(), self.limit, self.opts.seed);
        let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
        let sp = data::stratified_split(&labels, SENTIMENT_CALIB_FRACTION, self.opts.seed)?;
        let prompts: Vec<String> = chosen
            .iter()
            .map(|&i| sentiment_prompt(&corpus.docs[i].text))
            .collect();
        let encode = |idx: &[usize]| -> Result<Vec<Vec<u32>>> {
            idx.iter()
                .map(|&i| Ok(tok.encode(&prompts[i], Some(self.seq_len))?))
                .collect()
        };
        // Calibration sentences (never scored): label-free decision bias from the dense
        // model, and the score statistics for the thresholds.
        let mut cal_idx = sp.test.clone();
        if let Some((_, _, Some(n), _)) = self.calib_choice() {
            cal_idx.truncate(n.max(1));
        }
        if cal_idx.is_empty() {
            return Err(EvalError::Input("no sentence left to calibrate on".into()));
        }
        self.progress
            .stage("calibration sentences", cal_idx.len() as u64);
        let cal = self.calibrator();
        let mut margins = Vec::with_capacity(cal_idx.len());
        self.decode_all(
            &encode(&cal_idx)?,
            self.opts.batch_size,
            &cal,
            &mut PassTotals::new(false),
            |len| vec![len - 1],
            |_, _, row| {
                margins.push(row[pos] as f64 - row[neg] as f64);
                Ok(())
            },
        )?;
        margins.sort_by(f64::total_cmp);
        let bias = median_sorted(&margins);
        let cal_split = format!(
            "{} sentences (stratified {:.0}% split, seed {}), not scored",
            cal_idx.len(),
            SENTIMENT_CALIB_FRACTION * 100.0,
            self.opts.seed
        );
        let (th, th_report) = self.thresholds(|_| Ok((cal.into_stats(), cal_split.clone())))?;
        let eval_idx = sp.train.clone();
        let eval_ids = encode(&eval_idx)?;
        let eval_labels: Vec<usize> = eval_idx.iter().map(|&i| labels[i]).collect();
        let (rows, tokens) = self.rows(
            &th,
            eval_idx.len(),
            |_| None,
            |attn, trace| {
                let mut pred = vec![0usize; eval_ids.len()];
                let mut totals = PassTotals::new(trace);
                self.decode_all(
                    &eval_ids,
                    self.opts.batch_size,
                    attn,
                    &mut totals,
                    |len| vec![len - 1],
                    |i, _, row| {
                        pred[i] = usize::from(row[pos] as f64 - row[neg] as f64 > bias);
                        Ok(())
                    },
                )?;
                Ok(PassResult {
                    outputs: Default::default(),
                    metric: accuracy(&pred, &eval_labels),
                    perplexity: None,
                    item_correct: Some(
                        pred.iter().zip(&eval_labels).map(|(p, l)| p == l).collect(),
                    ),
                    totals,
                })
            },
        )?;
        let split = format!(
            "{} of {} sentences scored (stratified, seed {}); positive iff logit(`{SENTIMENT_POSITIVE}`) - logit(`{SENTIMENT_NEGATIVE}`) as next token after a chat prompt exceeds {bias:.3}, the label-free median of that margin over the dense model on {cal_split}",
            eval_idx.len(),
            chosen.len(),
            self.opts.seed
        );
        Ok(self.report(eval_idx.len(), tokens, split, th_report, None, rows))
    }
}

/// Median of a sorted slice (0 when empty).
fn median_sorted(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}
