//! `sprint`: the command-line tool. Thin: it parses arguments, reads and writes files, and
//! calls the library crates. Every failure is one line on stderr and a non-zero exit.

mod args;
mod assets;
mod attend;
mod eval;
mod io;
mod progress;
mod reproduce;
mod simulate;
mod sweep;
mod sweep_sparsity;
mod synth;
mod thresholds;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the model forwards allocate and free many
/// multi-megabyte activations, which glibc returns to the kernel and faults back in
/// (about a third of eval time went to page clearing; docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SPRINT sparse-attention accelerator: functional model and simulator.
#[derive(Parser)]
#[command(name = "sprint", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the pinned real models and data sets into the cache; list what is there.
    Assets(assets::Args),
    /// Run attention on Q/K/V tensors the way SPRINT does; write the output and a trace.
    Attend(attend::Args),
    /// Write synthetic Q/K/V with realistic locality to a safetensors file.
    Synth(synth::Args),
    /// Cycle-level performance and energy of SPRINT and its baselines (docs/simulator.md).
    Simulate(simulate::Args),
    /// Accuracy of a real model on a real task with each attention variant (Fig 9 layout).
    Eval(eval::Args),
    /// Learn or calibrate pruning thresholds; writes a thresholds file (docs/thresholds.md).
    Thresholds(thresholds::Args),
    /// Accuracy against kept fraction per variant and threshold method: CSV and SVG.
    SweepSparsity(sweep_sparsity::Args),
    /// The paper's evaluation in one command: accuracy, sweeps, simulator; a report with
    /// tables (CSV, JSON) and plots (SVG), cached per stage (docs/reproduce.md).
    Reproduce(reproduce::Args),
    /// Grid sweep of configuration keys x values x workloads x designs (or models, tasks,
    /// variants): CSV and Pareto SVG, resumable and shardable (`--shard i/n`, `merge`).
    Sweep(sweep::Args),
}

/// On SIGINT or SIGTERM, removes every temporary output file being written (see
/// `sprint_core::outfile`) and exits with 128 + the signal number: an interrupted run leaves
/// only complete files. Uses the `signal-hook` crate (a handler thread, no unsafe code here).
fn install_signal_cleanup() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    eprintln!("error: interrupted ({name}); partial output files removed");
                    sprint_core::outfile::remove_pending_and_exit(128 + sig);
                }
            });
        }
        Err(e) => eprintln!("warning: cannot install the signal handler ({e})"),
    }
}

/// candle's element-wise CPU ops (the candle ops left in the forwards and the fine-tuning's
/// autograd) run on a pool of its own, whose callers spin while its worker runs and whose
/// worker spins between calls: beside our rayon pools that was 15 % of `sprint reproduce`'s
/// CPU samples (docs/performance.md). One thread (no worker) runs each op inline; the ops
/// are element-wise, so every result is the same. A value the user set is kept.
#[allow(unsafe_code)]
fn candle_ops_inline() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before any thread exists, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc 2.x as pinned
/// by libmimalloc-sys =0.1.49; the crate does not export the constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages stay with the allocator instead of going back to the kernel 10 ms later
/// (mimalloc's default purge delay): the forwards free and re-allocate the same
/// multi-megabyte activations from one document to the next, and each purge made the next
/// use fault the pages in and clear them again (a quick `sprint reproduce` stage spent a
/// quarter of its CPU in the kernel; docs/performance.md). Memory use is bounded by the
/// peak, as before. A `MIMALLOC_PURGE_DELAY` the user set is kept.
#[allow(unsafe_code)]
fn allocator_keeps_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; -1 is a documented value
        // ("no purging at all").
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() {
    allocator_keeps_freed_pages();
    candle_ops_inline();
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args::note_deprecated(&argv);
    let cli = Cli::parse();
    install_signal_cleanup();
    let result = match cli.command {
        Command::Assets(a) => assets::run(a),
        Command::Attend(a) => attend::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Thresholds(a) => thresholds::run(a),
        Command::SweepSparsity(a) => sweep_sparsity::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Sweep(a) => sweep::run(a),
    };
    if let Err(e) = result {
        eprintln!(
            "error: {}",
            sprint_core::outfile::one_line(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}
