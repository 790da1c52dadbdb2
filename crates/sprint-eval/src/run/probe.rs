//! The probe tasks (BBC News, SpamAssassin, Austen attribution): a linear probe fitted on
//! encoder embeddings of a stratified train split, then scored on the test split's
//! embeddings under each variant. The probe is fitted on the dense embeddings and frozen
//! ([`ProbeFit::Dense`]), or fitted again for each variant on its own embeddings
//! ([`ProbeFit::PerVariant`]).

use sprint_assets::{Cache, data};
use sprint_core::config::Variant;
use sprint_models::attention::Attention;

use super::ctx::Ctx;
use super::options::TEST_FRACTION;
use super::pass::{PassResult, PassTotals, embed_all};
use super::probe_fit::ProbeFit;
use super::report::{EvalReport, ProbeReport};
use super::variants::make_backend;
use crate::calibrate::ScoreStats;
use crate::error::{EvalError, Result};
use crate::logreg::{LogRegOptions, LogisticRegression};
use crate::memo::Memo;
use crate::metrics::accuracy;
use crate::tasks::{labeled_corpus, subset};

/// Probes fitted in this process, by model, task, document limit, length and seed.
static PROBES: Memo<String, (LogisticRegression, f64)> = Memo::new();

impl Ctx<'_> {
    pub(super) fn probe(&self, cache: &Cache) -> Result<EvalReport> {
        let corpus = labeled_corpus(self.opts.task, cache)?;
        let chosen = subset(corpus.docs.len(), self.limit, self.opts.seed);
        let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
        let sp = data::stratified_split(&labels, TEST_FRACTION, self.opts.seed)?;
        if sp.train.is_empty() || sp.test.is_empty() {
            return Err(EvalError::Input(format!(
                "{} documents are too few for a train/test split",
                chosen.len()
            )));
        }
        let text = |i: usize| corpus.docs[chosen[i]].text.as_str();
        let probe_docs = self.probe_documents(&sp.train);
        let train_texts: Vec<&str> = probe_docs.iter().map(|&i| text(i)).collect();
        let train_labels: Vec<usize> = probe_docs.iter().map(|&i| labels[i]).collect();
        let test_texts: Vec<&str> = sp.test.iter().map(|&i| text(i)).collect();
        let test_labels: Vec<usize> = sp.test.iter().map(|&i| labels[i]).collect();
        let bs = self.opts.batch_size;
        let classes = corpus.labels.len();

        // Probe on dense embeddings of the train split (fitted once per model, task, data
        // and seed in a process: a sweep evaluates many thresholds with the same probe).
        // Only when some row is scored with it: the dense row, or every row of a frozen
        // probe; each variant fitting its own probe without a dense row never reads it.
        let needs_dense_probe =
            self.opts.probe_fit == ProbeFit::Dense || self.opts.variants.contains(&Variant::Dense);
        let key = format!(
            "{}|{}|{:?}|{}|{}|{}",
            self.model.name,
            self.opts.task.name(),
            self.limit,
            self.seq_len,
            self.opts.seed,
            train_texts.len()
        );
        let dense_probe = if needs_dense_probe {
            Some(self.dense_probe(&key, &train_texts, &train_labels, classes)?)
        } else {
            None
        };

        // Thresholds.
        let (th, th_report) =
            self.thresholds(|items| self.calibration_documents(items, &sp.train, &text))?;

        let mut variant_train_accuracy = Vec::new();
        // A row scored by the dense probe is determined by the pass's key and that probe's;
        // a row with its own probe fits it in the pass (not kept).
        let dense_probe_id = format!("dense probe {key}");
        let memo = |v: Variant| {
            (v == Variant::Dense || self.opts.probe_fit == ProbeFit::Dense)
                .then(|| dense_probe_id.clone())
        };
        let (rows, tokens) = self.rows(&th, test_texts.len(), memo, |attn, trace| {
            let variant = attn.config().variant;
            let own_probe = if self.opts.probe_fit == ProbeFit::PerVariant
                && variant != Variant::Dense
            {
                self.progress.stage(
                    &format!("{} train documents (probe)", variant.name()),
                    train_texts.len() as u64,
                );
                let (own, acc) = self.fitted_probe(attn, &train_texts, &train_labels, classes)?;
                variant_train_accuracy.push((variant.name().to_string(), acc));
                self.progress.stage(
                    &format!("{} {}", variant.name(), self.opts.task.item_name()),
                    test_texts.len() as u64,
                );
                Some(own)
            } else {
                None
            };
            let (x, totals) = embed_all(
                self.model,
                &test_texts,
                self.seq_len,
                bs,
                attn,
                trace,
                self.progress,
            )?;
            let probe = match (&own_probe, &dense_probe) {
                (Some(own), _) => own,
                (None, Some((clf, _))) => clf,
                (None, None) => {
                    return Err(EvalError::Input(format!(
                        "no probe for the {} row",
                        variant.name()
                    )));
                }
            };
            scored(probe, x, totals, &test_labels)
        })?;
        let split = self.split_description(chosen.len(), &sp, train_texts.len());
        let probe = ProbeReport {
            train_documents: train_texts.len(),
            train_accuracy: dense_probe.as_ref().map(|p| p.1),
            fit: self.opts.probe_fit,
            variant_train_accuracy,
            classes: corpus.labels.clone(),
        };
        Ok(self.report(
            test_texts.len(),
            tokens,
            split,
            th_report,
            Some(probe),
            rows,
        ))
    }

    /// The probe's documents: the train split, or a seeded choice of `probe_train` of them.
    fn probe_documents(&self, train: &[usize]) -> Vec<usize> {
        let mut probe_docs = train.to_vec();
        if let Some(n) = self.opts.probe_train.filter(|&n| n < probe_docs.len()) {
            let mut order = data::permutation(probe_docs.len(), self.opts.seed ^ 0x9b0b_e000);
            order.truncate(n.max(1));
            order.sort_unstable();
            probe_docs = order.iter().map(|&j| train[j]).collect();
        }
        probe_docs
    }

    /// A probe fitted on the embeddings of `texts` under `attn`, with its train accuracy.
    fn fitted_probe(
        &self,
        attn: &dyn Attention,
        texts: &[&str],
        labels: &[usize],
        classes: usize,
    ) -> Result<(LogisticRegression, f64)> {
        let (train_x, _) = embed_all(
            self.model,
            texts,
            self.seq_len,
            self.opts.batch_size,
            attn,
            false,
            self.progress,
        )?;
        let clf = LogisticRegression::fit(&train_x, labels, classes, &LogRegOptions::default())?;
        let train_acc = accuracy(&clf.predict(&train_x)?, labels);
        Ok((clf, train_acc))
    }

    /// The probe on dense embeddings of the train documents `texts`, fitted once per `key`
    /// (model, task, data and seed) in a process: a sweep evaluates many thresholds with the
    /// same probe.
    fn dense_probe(
        &self,
        key: &str,
        texts: &[&str],
        labels: &[usize],
        classes: usize,
    ) -> Result<(LogisticRegression, f64)> {
        if let Some(c) = PROBES.get(&key.to_string()) {
            return Ok(c);
        }
        self.progress
            .stage("dense train documents", texts.len() as u64);
        let dense = make_backend(self.opts, Variant::Dense, &None, 1, 1)?;
        let (clf, train_acc) = self.fitted_probe(dense.as_ref(), texts, labels, classes)?;
        PROBES.put(key.to_string(), (clf.clone(), train_acc));
        Ok((clf, train_acc))
    }

    /// The data of the report: the split of `documents` and the probe's share of its train
    /// part (`probe_documents`).
    fn split_description(
        &self,
        documents: usize,
        sp: &data::Split,
        probe_documents: usize,
    ) -> String {
        let probe_note = if probe_documents < sp.train.len() {
            format!(
                " (the probe fitted on a seeded {} of the train documents)",
                probe_documents
            )
        } else {
            String::new()
        };
        format!(
            "stratified {:.0}% test split of {} documents (seed {}), {} train / {} test, first {} tokens{probe_note}",
            TEST_FRACTION * 100.0,
            documents,
            self.opts.seed,
            sp.train.len(),
            sp.test.len(),
            self.seq_len
        )
    }

    /// The calibration of a probe task: `items` (default 16) documents of the train split
    /// `train` (a seeded choice; `text` gives a document's text), run with the calibrator.
    fn calibration_documents<'t>(
        &self,
        items: Option<usize>,
        train: &[usize],
        text: &dyn Fn(usize) -> &'t str,
    ) -> Result<(ScoreStats, String)> {
        let n = items.unwrap_or(16).min(train.len()).max(1);
        let mut order = data::permutation(train.len(), self.opts.seed ^ 0xca11_b000);
        order.truncate(n);
        order.sort_unstable();
        // Drawn from the whole train split whatever the probe's share of it (the same
        // calibration documents with or without `probe_train`).
        let texts: Vec<&str> = order.iter().map(|&j| text(train[j])).collect();
        self.progress.stage("calibration documents", n as u64);
        let cal = self.calibrator();
        embed_all(
            self.model,
            &texts,
            self.seq_len,
            self.opts.batch_size,
            &cal,
            false,
            self.progress,
        )?;
        let split = format!(
            "{n} documents of the train split (seeded choice, seed {})",
            self.opts.seed
        );
        Ok((cal.into_stats(), split))
    }
}

/// A pass's result from the embeddings `x` of the test documents: `probe`'s predictions
/// scored against `labels`, with the posteriors and embeddings kept for the fidelity.
fn scored(
    probe: &LogisticRegression,
    x: Vec<Vec<f32>>,
    totals: PassTotals,
    labels: &[usize],
) -> Result<PassResult> {
    let pred = probe.predict(&x)?;
    let posteriors = x
        .iter()
        .map(|row| probe.predict_proba(row))
        .collect::<Result<Vec<_>>>()?;
    Ok(PassResult {
        outputs: crate::fidelity::ItemOutputs {
            posteriors: Some(posteriors),
            embeddings: Some(x),
            ..Default::default()
        },
        metric: accuracy(&pred, labels),
        perplexity: None,
        item_correct: Some(pred.iter().zip(labels).map(|(p, l)| p == l).collect()),
        totals,
    })
}
