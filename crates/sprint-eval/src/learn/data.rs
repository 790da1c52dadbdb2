//! The training data of a run: the token sequences of a task's training items (disjoint
//! from the items `sprint eval` scores) and, for probe tasks, their labels.

use sprint_assets::{Cache, data};
use sprint_models::LoadedModel;

use super::options::{LearnOptions, reserved_tokens};
use crate::error::{EvalError, Result};
use crate::run::TEST_FRACTION;
use crate::tasks::{Task, TaskKind, labeled_corpus, perplexity_text, subset, windows};

/// The training (and calibration) items of `task` for options `o`: token sequences of at
/// most `o.seq_len` tokens, and a description of the data.
pub fn training_items(
    model: &LoadedModel,
    cache: &Cache,
    task: Task,
    o: &LearnOptions,
) -> Result<(Vec<Vec<u32>>, String)> {
    let tok = model.tokenizer()?;
    match task.kind() {
        TaskKind::Probe => {
            let docs = probe_training_docs(cache, task, o)?;
            let seqs = docs
                .docs
                .iter()
                .map(|&d| Ok(tok.encode(&docs.corpus.docs[d].text, Some(o.seq_len))?))
                .collect::<Result<Vec<_>>>()?;
            let split = format!(
                "{} of the {} documents of the stratified {:.0}% train split of {} documents (seed {}), first {} tokens; disjoint from the test split `sprint eval` scores with the same --limit and --seed",
                seqs.len(),
                docs.train_split,
                (1.0 - TEST_FRACTION) * 100.0,
                docs.chosen,
                o.seed,
                o.seq_len
            );
            Ok((seqs, split))
        }
        TaskKind::Perplexity => {
            let text = perplexity_text(task, cache)?;
            let ids = tok.encode_plain(&text)?;
            let reserved = reserved_tokens(o)?;
            if reserved >= ids.len() {
                return Err(EvalError::Input(format!(
                    "the text has {} tokens; the {} evaluation windows of {} reserve all of them",
                    ids.len(),
                    o.eval_windows,
                    o.eval_seq_len
                )));
            }
            let all = windows(&ids[reserved..], o.seq_len);
            if all.is_empty() {
                return Err(EvalError::Input(format!(
                    "no training window of {} tokens is left after the {reserved} reserved tokens",
                    o.seq_len
                )));
            }
            let mut order = data::permutation(all.len(), o.seed ^ 0x1ea7_0002);
            if o.items > 0 {
                order.truncate(o.items.min(order.len()));
            }
            order.sort_unstable();
            let seqs: Vec<Vec<u32>> = order.iter().map(|&j| all[j].to_vec()).collect();
            let split = format!(
                "{} of the {} non-overlapping {}-token windows after the first {reserved} tokens (the {} evaluation windows of {} tokens), chosen with seed {}",
                seqs.len(),
                all.len(),
                o.seq_len,
                o.eval_windows,
                o.eval_seq_len,
                o.seed
            );
            Ok((seqs, split))
        }
        TaskKind::ZeroShot => Err(EvalError::Input(format!(
            "learned thresholds support the probe and perplexity tasks, not `{}`",
            task.name()
        ))),
    }
}

/// The labels of a probe task's training items (in the order of [`training_items`]) and
/// the number of classes.
pub fn training_labels(cache: &Cache, task: Task, o: &LearnOptions) -> Result<(Vec<usize>, usize)> {
    if task.kind() != TaskKind::Probe {
        return Err(EvalError::Input(format!(
            "`{}` has no labels (not a probe task)",
            task.name()
        )));
    }
    let docs = probe_training_docs(cache, task, o)?;
    let labels = docs
        .docs
        .iter()
        .map(|&d| docs.corpus.docs[d].label)
        .collect();
    Ok((labels, docs.corpus.labels.len()))
}

/// The training documents of a probe task: indices into the corpus, in the order of
/// [`training_items`], and the sizes they were drawn from.
struct ProbeTrainingDocs {
    corpus: data::LabeledCorpus,
    docs: Vec<usize>,
    train_split: usize,
    chosen: usize,
}

fn probe_training_docs(cache: &Cache, task: Task, o: &LearnOptions) -> Result<ProbeTrainingDocs> {
    let corpus = labeled_corpus(task, cache)?;
    let limit = (o.limit > 0).then_some(o.limit);
    let chosen = subset(corpus.docs.len(), limit, o.seed);
    let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
    let sp = data::stratified_split(&labels, TEST_FRACTION, o.seed)?;
    let mut order = data::permutation(sp.train.len(), o.seed ^ 0x1ea7_0001);
    if o.items > 0 {
        order.truncate(o.items.min(order.len()));
    }
    order.sort_unstable();
    Ok(ProbeTrainingDocs {
        docs: order.iter().map(|&j| chosen[sp.train[j]]).collect(),
        train_split: sp.train.len(),
        chosen: chosen.len(),
        corpus,
    })
}
