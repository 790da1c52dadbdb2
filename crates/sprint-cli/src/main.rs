//! `sprint`: the command-line tool. Thin: it parses arguments, reads and writes files, and
//! calls the library crates. Every failure is one line on stderr and a non-zero exit.

mod assets;
mod attend;
mod eval;
mod io;
mod progress;
mod simulate;
mod synth;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Assets(a) => assets::run(a),
        Command::Attend(a) => attend::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Eval(a) => eval::run(a),
    };
    if let Err(e) = result {
        let msg = format!("{e:#}");
        eprintln!(
            "error: {}",
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        std::process::exit(1);
    }
}
