//! `pgplakar`: the project's command-line tool.
//!
//! Diagnostics go to stderr through `tracing`; stdout carries only what a command is asked to
//! print (so it can be piped), or the tar stream of `backup physical -Ft -D -`. The binary only
//! parses options and wires library code: the orchestrator (`backup-plan`), the sources
//! (`pg-physical`, `pg-logical`) and the sinks (`dir-sink`, `tar-sink`, `record_sink::NullSink`).
//! See docs/cli.md.

// The CLI's job is to print results on stdout; no plugin binary links this crate.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
#[cfg(feature = "demo")]
mod demo;
mod inspect;
mod logical;
mod progress;
mod replay;
mod signals;
mod standby;
mod verify;

/// Exit codes (also in `pgplakar --help` and docs/cli.md).
pub(crate) mod exit {
    /// The command did what it was asked.
    pub(crate) const OK: u8 = 0;
    /// It failed (connection, server, disk, …); nothing usable was left behind.
    pub(crate) const FAILED: u8 = 1;
    /// The command line was wrong.
    pub(crate) const USAGE: u8 = 2;
    /// `verify` (or `replay`) found the backup different from its manifest.
    pub(crate) const MISMATCH: u8 = 3;
    /// Interrupted (SIGINT, SIGTERM): the backup was aborted and cleaned up.
    pub(crate) const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Examples:
  pgplakar backup physical -d postgres+bin://replicator@db -D /srv/backup/pgdata
  pgplakar backup physical -d 'host=db user=replicator' -Ft -D - > base.tar
  pgplakar backup physical -d postgres+bin://replicator@db -D standby -R -X stream -S standby1 -C
  pgplakar backup physical -d postgres+bin://replicator@db --dry-run --json
  pgplakar verify /srv/backup/pgdata
  pgplakar backup logical -d postgres://postgres@db/app -D /srv/backup/app
  pgplakar restore logical /srv/backup/app -d postgres://postgres@newdb --create-db
  pgplakar record -d postgres+bin://replicator@db -o backup.pgrec
  pgplakar inspect backup.pgrec --json | jq .
  pgplakar replay backup.pgrec -D /tmp/pgdata

Exit codes: 0 success; 1 failure (nothing usable left behind); 2 bad command line;
3 the backup does not match its manifest (verify, replay); 130 interrupted (Ctrl-C).
Logs go to stderr (-v, -vv, or RUST_LOG); a progress bar when stderr is a terminal.";

/// PostgreSQL backups with the project's own replication client: physical (like
/// pg_basebackup, verified against backup_manifest while streaming) and logical (pg_dump).
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr, no progress bar.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back up a cluster: `physical` (a base backup) or `logical` (pg_dump).
    #[command(subcommand)]
    Backup(BackupKind),
    /// Restore a logical backup (`restore logical DIR -d …`).
    #[command(subcommand)]
    Restore(RestoreKind),
    /// Check a data directory or a tar backup against its backup_manifest (sizes and
    /// checksums; missing and extra files).
    Verify(verify::VerifyArgs),
    /// Record the raw replication stream of a base backup into a file (nothing else is
    /// written); `inspect` and `replay` read it.
    Record(Box<backup::RecordArgs>),
    /// Show a recording message by message (human or --json lines).
    Inspect(inspect::InspectArgs),
    /// Decode a recording offline: a summary, or the data directory it holds (-D).
    Replay(replay::ReplayArgs),
    /// Run the main job on a throwaway local PostgreSQL cluster: a physical and a logical
    /// backup, both restored and checked, and a short report.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum BackupKind {
    /// A base backup of the whole cluster into a data directory (-Fp), tar files (-Ft, `-D -`
    /// for stdout) or nowhere (--dry-run), verified against backup_manifest while it streams.
    Physical(Box<backup::PhysicalArgs>),
    /// pg_dump of one database (globals.sql + <db>.dump) or of the cluster (all.sql) into a
    /// directory.
    Logical(Box<logical::BackupArgs>),
}

#[derive(Debug, Subcommand)]
enum RestoreKind {
    /// Restore a directory written by `backup logical` (pg_restore / psql).
    Logical(Box<logical::RestoreArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let ui = progress::Ui::new(cli.quiet);
    let result = match cli.command {
        Command::Backup(BackupKind::Physical(args)) => backup::run_physical(*args, &ui),
        Command::Backup(BackupKind::Logical(args)) => logical::run_backup(*args, &ui),
        Command::Restore(RestoreKind::Logical(args)) => logical::run_restore(*args, &ui),
        Command::Verify(args) => verify::run(args),
        Command::Record(args) => backup::run_record(*args, &ui),
        Command::Inspect(args) => inspect::run(args),
        Command::Replay(args) => replay::run(args, &ui),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args).map(|()| exit::OK),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code =
                if e.downcast_ref::<Interrupted>().is_some() { exit::INTERRUPTED } else { exit::FAILED };
            tracing::error!("{}", explain(&e));
            ExitCode::from(code)
        }
    }
}

/// The error of a command a signal stopped (the plan was cancelled and its sink aborted).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}: the backup was aborted")]
pub(crate) struct Interrupted(pub(crate) &'static str);

/// The error with its causes, and what to do next when the cause is a known one.
fn explain(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let hint = hint(&text);
    match hint {
        Some(h) => format!("{text}\n  hint: {h}"),
        None => text,
    }
}

/// A next step for errors whose cause is common and fixable by the user.
fn hint(text: &str) -> Option<&'static str> {
    let t = text.to_lowercase();
    if t.contains("no pg_hba.conf entry for replication") {
        Some(
            "the server refused a replication connection: add `host replication <user> <client address>/32 \
             scram-sha-256` to pg_hba.conf and reload the server",
        )
    } else if t.contains("no pg_hba.conf entry") {
        Some(
            "the server refused the connection: add a line for this user and address to pg_hba.conf and reload",
        )
    } else if t.contains("must be superuser or replication role")
        || t.contains("permission denied to start wal sender")
        || t.contains("permission denied to use replication")
    {
        Some("the role may not replicate: ALTER ROLE <user> REPLICATION (or use a role that has it)")
    } else if t.contains("password authentication failed") {
        Some("check the user and password (PGPASSWORD, ~/.pgpass or the connection string)")
    } else if t.contains("connection refused") {
        Some("is the server running and listening on that host and port (listen_addresses, port)?")
    } else if t.contains("number of requested standby connections exceeds") || t.contains("max_wal_senders") {
        Some("raise max_wal_senders on the server (a backup needs one, two with -X stream)")
    } else if t.contains("replication slot") && t.contains("already exists") {
        Some("the slot exists: drop -C to use it, or pick another name with -S")
    } else if t.contains("exists but is not empty") {
        Some("give a new or empty directory")
    } else {
        None
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,pgplakar=info",
        (false, 1) => "info",
        (false, 2) => "debug",
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
/// writes where the records arrive.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Runs `fut`; SIGINT or SIGTERM cancels `cancel` (the orchestrator then aborts the sink,
/// which removes what it wrote): the result, and which signal arrived if one did.
fn run_cancellable<F, T>(
    cancel: &backup_plan::CancellationToken,
    fut: F,
) -> anyhow::Result<(anyhow::Result<T>, signals::Interrupted)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let rt = runtime()?;
    rt.block_on(async {
        let interrupted = signals::cancel_on_signals(cancel.clone())?;
        Ok((fut.await, interrupted))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_for_common_causes() {
        let h =
            hint("FATAL: no pg_hba.conf entry for replication connection from host \"10.0.0.1\"").unwrap();
        assert!(h.contains("host replication"));
        assert!(hint("all is well").is_none());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
