//! `sprint`: the command-line tool. Thin: it parses arguments, reads and writes files, and
//! calls the library crates. Every failure is one line on stderr and a non-zero exit.

mod attend;
mod io;
mod synth;

use clap::{Parser, Subcommand};

/// SPRINT sparse-attention accelerator: functional model and simulator.
#[derive(Parser)]
#[command(name = "sprint", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run attention on Q/K/V tensors the way SPRINT does; write the output and a trace.
    Attend(attend::Args),
    /// Write synthetic Q/K/V with realistic locality to a safetensors file.
    Synth(synth::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Attend(a) => attend::run(a),
        Command::Synth(a) => synth::run(a),
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
