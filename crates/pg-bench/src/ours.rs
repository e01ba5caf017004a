//! The hidden `run-ours` subcommand: one base backup with `pg_physical::backup` into a
//! [`NullSink`] or a [`DirSink`], its outcome written as JSON for the parent.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backup_plan::{CancellationToken, Plan};
use dir_sink::{DirSink, DirSinkOptions};
use nix::sys::resource::{UsageWho, getrusage};
use pg_physical::{BackupOptions, BackupReport, RunOptions};
use record_sink::NullSink;
use serde::{Deserialize, Serialize};

/// Where our backup goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SinkKind {
    /// [`NullSink`]: network, decoding and manifest verification only.
    Null,
    /// [`DirSink`] with its final sync (like `pg_basebackup -Fp`).
    Dir,
}

/// Which tokio runtime runs our backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuntimeKind {
    /// `new_multi_thread` with `block_on`, as the `pgplakar` binary does.
    #[default]
    Multi,
    /// `new_current_thread`: socket reads and decoding on one thread.
    Current,
}

/// Arguments of `run-ours`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunOursArgs {
    /// The sink.
    #[arg(long, value_enum)]
    sink: SinkKind,
    /// libpq connection string of the server.
    #[arg(long)]
    conninfo: String,
    /// Data directory to create (`--sink dir`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to write the outcome (JSON).
    #[arg(long)]
    report: PathBuf,
    /// The tokio runtime.
    #[arg(long, value_enum, default_value = "current")]
    runtime: RuntimeKind,
}

/// What one of our backups did, as the child reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct OursReport {
    /// Bytes of file content received.
    pub(crate) bytes: u64,
    /// Regular files received.
    pub(crate) files: u64,
    /// Files verified against backup_manifest.
    pub(crate) verified_files: u64,
    /// `pg_physical`'s own elapsed time (connect to end).
    pub(crate) elapsed_ns: u64,
    /// `getrusage(RUSAGE_SELF)` peak RSS in KiB, a cross-check of the wrapper's figure.
    pub(crate) self_max_rss_kib: u64,
}

/// One physical backup through the orchestrator, as the CLI runs it.
async fn backup<S: record_sink::RecordSink>(
    config: &pg_config::Config,
    options: &BackupOptions,
    run: &RunOptions,
    sink: &mut S,
) -> Result<BackupReport> {
    let mut plan = Plan::physical(config.clone(), options.clone(), run.clone(), false)?;
    let report = plan.run(sink, &CancellationToken::new()).await?;
    report.physical().cloned().context("the plan had no physical step")
}

/// Runs `run-ours`.
pub(crate) fn run(args: &RunOursArgs) -> Result<()> {
    let config = pg_config::Config::parse(&args.conninfo).context("invalid --conninfo")?;
    // pg_basebackup's defaults: -c fast, -X fetch, CRC32C manifest, page checksums verified.
    let options = BackupOptions { label: "pgplakar-bench".into(), ..BackupOptions::default() };
    let run = RunOptions::default();
    let runtime = match args.runtime {
        RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        RuntimeKind::Current => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    let report: BackupReport = match args.sink {
        SinkKind::Null => {
            let mut sink = NullSink::new();
            let report = runtime.block_on(backup(&config, &options, &run, &mut sink))?;
            if !sink.stats().finished {
                bail!("the null sink was not finished");
            }
            report
        }
        SinkKind::Dir => {
            let dir = args.dir.as_ref().context("--sink dir needs --dir")?;
            let mut sink = DirSink::create(DirSinkOptions::new(dir))?;
            runtime.block_on(backup(&config, &options, &run, &mut sink))?
        }
    };
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage(RUSAGE_SELF)")?;
    let out = OursReport {
        bytes: report.summary.bytes,
        files: report.summary.files,
        verified_files: report.summary.verified_files,
        elapsed_ns: crate::measure::nanos(report.elapsed),
        self_max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
    };
    std::fs::write(&args.report, serde_json::to_vec(&out)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    Ok(())
}
