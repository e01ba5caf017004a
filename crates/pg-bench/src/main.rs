//! `pgplakar-bench`: physical backup throughput and peak memory of the project's own client
//! against `pg_basebackup` of the same major, on the same throwaway cluster, measured
//! alternately in one run (see `docs/benchmarks.md`).
//!
//! The measured commands run as grandchildren: the bench re-executes itself as a `measure`
//! wrapper whose only child is the measured command, so the wrapper's
//! `getrusage(RUSAGE_CHILDREN)` (getrusage(2)) is exactly that command's peak RSS and CPU time.
//! Our side is the hidden `run-ours` subcommand of this same binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod measure;
mod ours;
mod report;

/// Physical backup benchmark: our BASE_BACKUP client against pg_basebackup, side by side.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    bench: bench::BenchArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: one backup with the project's client (run by the bench in a child process).
    #[command(hide = true)]
    RunOurs(ours::RunOursArgs),
    /// Internal: run a command as the only child and report its wall time, CPU and peak RSS.
    #[command(hide = true)]
    Measure(MeasureArgs),
}

/// Arguments of the hidden `measure` wrapper.
#[derive(Debug, clap::Args)]
struct MeasureArgs {
    /// Where to write the measurement (JSON).
    #[arg(long)]
    result: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<std::ffi::OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::RunOurs(args)) => ours::run(&args),
        Some(Command::Measure(args)) => measure::wrap(&args.result, &args.command),
        None => bench::run(&cli.bench),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::progress(&format!("pgplakar-bench: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
