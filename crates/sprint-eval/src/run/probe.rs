//! The probe tasks (BBC News, SpamAssassin, Austen attribution): a linear probe fitted on
//! encoder embeddings of a stratified train split, then scored on the test split's
//! embeddings under each variant. The probe is fitted on the dense embeddings and frozen
//! ([`ProbeFit::Dense`]), or fitted again for each variant on its own embeddings
//! ([`ProbeFit::PerVariant`]).

use sprint_assets::{Cache, data};
use sprint_core::config::Variant;

use super::pass::{PassResult, embed_all};
use super::variants::make_backend;
use super::{Ctx, EvalReport, ProbeFit, ProbeReport, TEST_FRACTION};
use crate::error::{EvalError, Result};
use crate::logreg::{LogRegOptions, LogisticRegression};
use crate::metrics::accuracy;
use crate::tasks::{labeled_corpus, subset};

/// Probes fitted in this process, by model, task, document limit, length and seed.
static PROBES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (LogisticRegression, f64)>>,
> = std::sync::LazyLock::new(Default::default);

/// Forgets the probes fitted in this process.
pub(super) fn clear_memo() {
    PROBES.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

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
        // The probe's documents: the train split, or a seeded choice of `probe_train` of them.
        let mut probe_docs = sp.train.clone();
        if let Some(n) = self.opts.probe_train.filter(|&n| n < probe_docs.len()) {
            let mut order = data::permutation(probe_docs.len(), self.opts.seed ^ 0x9b0b_e000);
            order.truncate(n.max(1));
            order.sort_unstable();
            probe_docs = order.iter().map(|&j| sp.train[j]).collect();
        }
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
        let dense_probe: Option<(LogisticRegression, f64)> = if !needs_dense_probe {
            None
        } else if let Some(c) = PROBES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
        {
            Some(c)
        } else {
            self.progress
                .stage("dense train documents", train_texts.len() as u64);
            let dense = make_backend(self.opts, Variant::Dense, &None, 1, 1)?;
            let (train_x, _) = embed_all(
                self.model,
                &train_texts,
                self.seq_len,
                bs,
                dense.as_ref(),
                false,
                self.progress,
            )?;
            let clf = LogisticRegression::fit(
                &train_x,
                &train_labels,
                classes,
                &LogRegOptions::default(),
            )?;
            let train_acc = accuracy(&clf.predict(&train_x)?, &train_labels);
            PROBES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), (clf.clone(), train_acc));
            Some((clf, train_acc))
        };

        // Thresholds.
        let (th, th_report) = self.thresholds(|items| {
            let n = items.unwrap_or(16).min(sp.train.len()).max(1);
            let mut order = data::permutation(sp.train.len(), self.opts.seed ^ 0xca11_b000);
            order.truncate(n);
            order.sort_unstable();
            // Drawn from the whole train split whatever the probe's share of it (the same
            // calibration documents with or without `probe_train`).
            let texts: Vec<&str> = order.iter().map(|&j| text(sp.train[j])).collect();
            self.progress.stage("calibration documents", n as u64);
            let cal = self.calibrator();
            embed_all(
                self.model,
                &texts,
                self.seq_len,
                bs,
                &cal,
                false,
                self.progress,
            )?;
            let split = format!(
                "{n} documents of the train split (seeded choice, seed {})",
                self.opts.seed
            );
            Ok((cal.into_stats(), split))
        })?;

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
            let own_probe =
                if self.opts.probe_fit == ProbeFit::PerVariant && variant != Variant::Dense {
                    self.progress.stage(
                        &format!("{} train documents (probe)", variant.name()),
                        train_texts.len() as u64,
                    );
                    let (train_x, _) = embed_all(
                        self.model,
                        &train_texts,
                        self.seq_len,
                        bs,
                        attn,
                        false,
                        self.progress,
                    )?;
                    let own = LogisticRegression::fit(
                        &train_x,
                        &train_labels,
                        classes,
                        &LogRegOptions::default(),
                    )?;
                    let acc = accuracy(&own.predict(&train_x)?, &train_labels);
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
                metric: accuracy(&pred, &test_labels),
                perplexity: None,
                item_correct: Some(pred.iter().zip(&test_labels).map(|(p, l)| p == l).collect()),
                totals,
            })
        })?;
        let probe_note = if train_texts.len() < sp.train.len() {
            format!(
                " (the probe fitted on a seeded {} of the train documents)",
                train_texts.len()
            )
        } else {
            String::new()
        };
        let split = format!(
            "stratified {:.0}% test split of {} documents (seed {}), {} train / {} test, first {} tokens{probe_note}",
            TEST_FRACTION * 100.0,
            chosen.len(),
            self.opts.seed,
            sp.train.len(),
            sp.test.len(),
            self.seq_len
        );
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
}
