//! `pgplakar`: the project's command-line tool.
//!
//! Diagnostics go to stderr through `tracing`; stdout carries only what a command is asked to
//! print (so it can be piped).

// The CLI's job is to print results on stdout; no plugin binary links this crate.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
#[cfg(feature = "demo")]
mod demo;
mod replay;
mod signals;
mod verify;

/// PostgreSQL backups with the project's own replication client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Physical backup of a whole cluster into a data directory (like `pg_basebackup -Fp`,
    /// verified against backup_manifest while it streams).
    Backup(Box<backup::BackupArgs>),
    /// Check a backup directory against its backup_manifest (sizes and checksums).
    Verify(verify::VerifyArgs),
    /// Decode a recorded replication stream offline and summarise it.
    Replay(replay::ReplayArgs),
    /// Run the main job on a throwaway local PostgreSQL cluster: back up, restore, verify.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Backup(args) => backup::run(*args),
        Command::Verify(args) => verify::run(args),
        Command::Replay(args) => replay::run(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a terminal: escape codes in a redirected log are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// The runtime of a command: one thread. The benchmark (docs/benchmarks.md) measured a
/// multi-thread runtime handing every socket read between threads; the directory sink
/// writes on a thread of its own anyway.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
