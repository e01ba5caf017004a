//! One backup from many sources: the orchestrator.
//!
//! A backup is an ordered list of [`record_sink::Source`]s writing into one
//! [`RecordSink`]: the cluster metadata (`/manifest.json`) first, then the data — a physical base
//! backup (`postgres+bin://`), or the logical dumps (`postgres://`). A [`Plan`] holds that list;
//! [`Plan::run`] runs it and owns the sink's lifecycle:
//!
//! - [`RecordSink::finish`] only after every source succeeded;
//! - [`RecordSink::abort`], with the reason, on the first failure of a source or of the sink,
//!   and when the [`CancellationToken`] is cancelled (the running source's future is dropped,
//!   which stops it: connections closed, their temporary slots gone, children killed);
//! - if `finish` itself fails, `abort` too, so that nothing half-finished passes for a backup.
//!
//! [`Location::parse`] resolves what a user typed (`postgres+bin://…`, `postgres://…`, libpq
//! keywords) into the kind of backup and its connection [`Config`]; the binaries (the CLI, the
//! Plakar plugins) only add their options and a sink.
//!
//! ```ignore
//! let location = Location::parse("postgres+bin://replicator@db", None)?;
//! let mut plan = Plan::physical(location.config, BackupOptions::default(), RunOptions::default(), true)?;
//! let report = plan.run(&mut sink, &CancellationToken::new()).await?;
//! ```

use std::error::Error as StdError;

use cluster_manifest::{ClusterManifest, CollectError, CollectOptions, DumpOptions, MetadataSource};
use pg_config::{Config, ConfigError};
use pg_logical::{DumpReport, DumpSource, LogicalError};
use pg_physical::{
    BackupOptions, BackupReport, BackupSummary, PhysicalError, PhysicalSource, ReplaySource, RunOptions,
};
use record_sink::{RecordSink, SinkError, Source};
pub use tokio_util::sync::CancellationToken;

mod location;

pub use location::{Kind, Location, PHYSICAL_SCHEME};

/// Why a plan could not be made from what the user gave.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The connection string or URI is not valid.
    #[error("invalid connection string")]
    Config(#[source] ConfigError),
    /// `postgres+bin://…/db`: a physical backup is the whole cluster.
    #[error("postgres+bin:// takes no database in its path: a physical backup is the whole cluster")]
    DatabaseInPhysicalLocation,
    /// Libpq keywords say nothing about the kind of backup, and the caller did not either.
    #[error(
        "cannot tell which kind of backup {0:?} asks for: use postgres+bin:// (physical) or postgres:// (logical)"
    )]
    UnknownKind(String),
    /// The logical backup cannot run (options, server, tools): checked before any record.
    #[error("the logical backup cannot start")]
    Logical(#[source] Box<LogicalError>),
}

/// The failure of one step of a backup.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Collecting or writing `/manifest.json`.
    #[error(transparent)]
    Metadata(Box<CollectError>),
    /// The physical base backup (or its offline replay).
    #[error(transparent)]
    Physical(Box<PhysicalError>),
    /// A logical dump (`pg_dump`, `pg_dumpall`).
    #[error(transparent)]
    Logical(Box<LogicalError>),
}

impl From<LogicalError> for StepError {
    fn from(e: LogicalError) -> Self {
        StepError::Logical(Box::new(e))
    }
}

impl From<CollectError> for StepError {
    fn from(e: CollectError) -> Self {
        StepError::Metadata(Box::new(e))
    }
}

impl From<PhysicalError> for StepError {
    fn from(e: PhysicalError) -> Self {
        StepError::Physical(Box::new(e))
    }
}

/// Why a backup failed. The sink was aborted with this error's text as the reason.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A source failed (the sink included, as the source saw it).
    #[error("{step} failed")]
    Step {
        /// Which step ([`Source::describe`]).
        step: String,
        /// What went wrong.
        #[source]
        error: StepError,
    },
    /// The backup was cancelled.
    #[error("the backup was cancelled")]
    Cancelled,
    /// Every source succeeded, but the sink could not make the backup durable.
    #[error("completing the backup")]
    Finish(#[source] SinkError),
}

/// One step of a plan: a source of records.
#[derive(Debug)]
pub enum Step {
    /// `/manifest.json`.
    Metadata(MetadataSource),
    /// A physical base backup (`/data/…`, `/tablespaces/…`).
    Physical(PhysicalSource),
    /// A recorded base backup replayed offline: the same records, verified the same way.
    Replay(ReplaySource),
    /// A logical dump: `/globals.sql`, `/<db>.dump` or `/all.sql`.
    Logical(DumpSource),
}

impl Step {
    /// What the step does, for progress and errors.
    pub fn describe(&self) -> String {
        match self {
            Step::Metadata(s) => s.describe(),
            Step::Physical(s) => s.describe(),
            Step::Replay(s) => s.describe(),
            Step::Logical(s) => s.describe(),
        }
    }

    async fn run<S: RecordSink>(&mut self, sink: &mut S) -> Result<StepReport, BackupError> {
        match self {
            Step::Metadata(s) => run_source(s, sink).await.map(|m| StepReport::Metadata(Box::new(m))),
            Step::Physical(s) => run_source(s, sink).await.map(|r| StepReport::Physical(Box::new(r))),
            Step::Replay(s) => run_source(s, sink).await.map(|r| StepReport::Replay(Box::new(r))),
            Step::Logical(s) => run_source(s, sink).await.map(|r| StepReport::Logical(Box::new(r))),
        }
    }
}

async fn run_source<Src, S>(source: &mut Src, sink: &mut S) -> Result<Src::Report, BackupError>
where
    Src: Source,
    Src::Error: Into<StepError>,
    S: RecordSink,
{
    let step = source.describe();
    tracing::debug!("{step}: starting");
    source.run(sink).await.map_err(|e| BackupError::Step { step, error: e.into() })
}

/// What one step reported.
#[derive(Debug)]
pub enum StepReport {
    /// The manifest that was written.
    Metadata(Box<ClusterManifest>),
    /// The physical backup's report.
    Physical(Box<BackupReport>),
    /// What a replay received and verified.
    Replay(Box<BackupSummary>),
    /// What one dump produced.
    Logical(Box<DumpReport>),
}

/// What a successful backup reported, step by step.
#[derive(Debug, Default)]
pub struct PlanReport {
    /// One report per step, in order.
    pub steps: Vec<StepReport>,
}

impl PlanReport {
    /// The physical step's report, if the plan had one.
    pub fn physical(&self) -> Option<&BackupReport> {
        self.steps.iter().find_map(|s| match s {
            StepReport::Physical(r) => Some(&**r),
            _ => None,
        })
    }

    /// The reports of the logical steps, in order.
    pub fn logical(&self) -> impl Iterator<Item = &DumpReport> {
        self.steps.iter().filter_map(|s| match s {
            StepReport::Logical(r) => Some(&**r),
            _ => None,
        })
    }

    /// The replay step's summary, if the plan had one.
    pub fn replay(&self) -> Option<&BackupSummary> {
        self.steps.iter().find_map(|s| match s {
            StepReport::Replay(r) => Some(&**r),
            _ => None,
        })
    }

    /// The manifest written, if the plan had a metadata step.
    pub fn metadata(&self) -> Option<&ClusterManifest> {
        self.steps.iter().find_map(|s| match s {
            StepReport::Metadata(m) => Some(&**m),
            _ => None,
        })
    }
}

/// An ordered list of steps that make one backup.
#[derive(Debug, Default)]
pub struct Plan {
    /// The steps, run in this order into one sink.
    pub steps: Vec<Step>,
}

impl Plan {
    /// A physical backup of the cluster `config` points at: `/manifest.json` (when `metadata`)
    /// then the base backup.
    pub fn physical(
        config: Config,
        options: BackupOptions,
        run: RunOptions,
        metadata: bool,
    ) -> Result<Self, PlanError> {
        let mut steps = Vec::new();
        if metadata {
            steps.push(Step::Metadata(metadata_source(&config, CollectOptions::physical)?));
        }
        steps.push(Step::Physical(PhysicalSource { config, options, run }));
        Ok(Self { steps })
    }

    /// A logical backup: `/manifest.json` (when `metadata`), then the dumps
    /// [`pg_logical::plan_backup`] chose (`/globals.sql` and `/<db>.dump`, or `/all.sql`).
    /// Everything the dumps need is checked here, before any record exists: the server answers,
    /// the database exists, client tools at least as new as the server are installed.
    pub async fn logical(options: &pg_logical::BackupOptions, metadata: bool) -> Result<Self, PlanError> {
        let plan = pg_logical::plan_backup(options).await.map_err(|e| PlanError::Logical(Box::new(e)))?;
        let mut steps = Vec::new();
        if metadata {
            let database = options.connection.database.clone();
            let config = plan
                .connection_config(database.as_deref().unwrap_or("postgres"))
                .map_err(|e| PlanError::Logical(Box::new(e)))?;
            let dump = DumpOptions {
                schema_only: options.schema_only,
                data_only: options.data_only,
                compress: options.compress,
            };
            let version = Some(plan.tools.version.clone());
            steps.push(Step::Metadata(metadata_source(&config, |host, port| {
                CollectOptions::logical(host, port, database, version, dump)
            })?));
        }
        steps.extend(plan.into_sources().into_iter().map(Step::Logical));
        Ok(Self { steps })
    }

    /// A recorded session replayed into the sink (see [`pg_physical::replay`]).
    pub fn replay(recording: impl Into<std::path::PathBuf>) -> Self {
        Self { steps: vec![Step::Replay(ReplaySource { path: recording.into() })] }
    }

    /// Runs every step into `sink`, then finishes it; aborts it on the first failure or on
    /// cancellation (see the [crate documentation](crate)).
    pub async fn run<S: RecordSink>(
        &mut self,
        sink: &mut S,
        cancel: &CancellationToken,
    ) -> Result<PlanReport, BackupError> {
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(BackupError::Cancelled),
            result = self.run_steps(sink) => result,
        };
        let error = match result {
            Ok(report) => match sink.finish().await {
                Ok(()) => return Ok(report),
                Err(e) => BackupError::Finish(e),
            },
            Err(e) => e,
        };
        let reason = chain(&error);
        tracing::debug!("aborting the backup: {reason}");
        if let Err(e) = sink.abort(&reason).await {
            tracing::warn!("could not mark the backup as failed: {}", chain(&e));
        }
        Err(error)
    }

    async fn run_steps<S: RecordSink>(&mut self, sink: &mut S) -> Result<PlanReport, BackupError> {
        let mut report = PlanReport::default();
        for step in &mut self.steps {
            report.steps.push(step.run(sink).await?);
        }
        Ok(report)
    }
}

/// The metadata source for the first host `config` names.
fn metadata_source(
    config: &Config,
    options: impl FnOnce(String, String) -> CollectOptions,
) -> Result<MetadataSource, PlanError> {
    let resolved = config.resolve().map_err(PlanError::Config)?;
    let (host, port) = resolved
        .targets
        .first()
        .map(|t| (t.host_text(), t.port.to_string()))
        .unwrap_or_else(|| (pg_config::DEFAULT_HOST.to_owned(), pg_config::DEFAULT_PORT.to_string()));
    Ok(MetadataSource::new(config.clone(), options(host, port)))
}

/// An error and its causes on one line, each once: `a: b: c`.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
