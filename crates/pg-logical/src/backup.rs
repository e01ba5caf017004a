//! The logical backup: a plan made before anything is emitted, and one [`DumpSource`] per
//! record.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, Source, Wants};
use tokio::io::AsyncReadExt;

use crate::child::{Child, Prepared, Spawn, describe_status};
use crate::error::LogicalError;
use crate::names::{ALL_FILE, GLOBALS_FILE, dump_file_name};
use crate::options::BackupOptions;
use crate::tools::{Prefer, ToolSet, choose};

/// Size of the chunks handed to the sink (at most; a slow child gives smaller ones).
pub const CHUNK: usize = 256 * 1024;

/// SQLSTATE `insufficient_privilege`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `invalid_catalog_name` (database does not exist).
pub(crate) const INVALID_CATALOG_NAME: &str = "3D000";

/// What a [`DumpSource`] dumps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpKind {
    /// `pg_dumpall --globals-only` → `/globals.sql`.
    Globals,
    /// `pg_dump -Fc` of one database → `/<encoded name>.dump`.
    Database(String),
    /// `pg_dumpall` → `/all.sql`.
    Cluster,
}

/// A checked plan: server, tools, fallbacks, and the sources to run in order.
pub struct BackupPlan {
    /// The server's major version.
    pub server_major: u32,
    /// The server's `server_version`.
    pub server_version: String,
    /// The client tools chosen (at least as new as the server).
    pub tools: ToolSet,
    /// Whether `--no-role-passwords` is used (`pg_authid` unreadable, SQLSTATE 42501).
    pub no_role_passwords: bool,
    /// Things worth telling the user (already logged as warnings).
    pub warnings: Vec<String>,
    /// The sources, in the order they should run (the metadata source is not included: the
    /// orchestrator adds it).
    pub sources: Vec<DumpSource>,
    prepared: Arc<Prepared>,
}

impl std::fmt::Debug for BackupPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupPlan")
            .field("server_major", &self.server_major)
            .field("tools", &self.tools)
            .field("no_role_passwords", &self.no_role_passwords)
            .field("sources", &self.sources.iter().map(|s| s.path.as_str().to_owned()).collect::<Vec<_>>())
            .finish()
    }
}

impl BackupPlan {
    /// The private directory of passfile and PEM files (removed when the plan and all its
    /// sources are dropped).
    pub fn private_dir(&self) -> &std::path::Path {
        self.prepared.private_dir()
    }

    /// The configuration of an ordinary connection to `db` with this plan's settings (inline
    /// PEM files written, passfile applied): for the metadata collector that runs before the
    /// dumps.
    pub fn connection_config(&self, db: &str) -> Result<pg_config::Config, LogicalError> {
        self.prepared.config_for(db)
    }

    /// The sources, in order; the plan's own hold on the private directory goes with it (the
    /// directory lives as long as any source).
    pub fn into_sources(self) -> Vec<DumpSource> {
        self.sources
    }
}

/// Checks everything a logical backup needs before any record is emitted: the server answers,
/// the database exists, `pg_authid` is readable (else `--no-role-passwords`, with a warning),
/// client tools at least as new as the server are installed. Returns the sources in order:
/// `/globals.sql` then `/<db>.dump` for one database, `/all.sql` for the whole cluster.
pub async fn plan_backup(opts: &BackupOptions) -> Result<BackupPlan, LogicalError> {
    let prepared = Prepared::new(&opts.connection)?;
    let mut warnings = Vec::new();
    // The database the probes connect to: the one to dump, else `postgres`, else `template1`
    // (as pg_dumpall does).
    let (mut client, maintenance_db) = match &opts.connection.database {
        Some(db) => {
            let cfg = prepared.config_for(db)?;
            let client = pg_conn::Client::connect(&cfg).await.map_err(|e| {
                let what = if e.code() == Some(INVALID_CATALOG_NAME) {
                    format!("database {db:?} does not exist")
                } else {
                    format!("connecting to database {db:?}")
                };
                LogicalError::Connect { what, error: e }
            })?;
            (client, None)
        }
        None => connect_maintenance(&prepared).await?,
    };
    let server_major = client
        .server_major()
        .ok_or_else(|| LogicalError::Tools("the server did not report server_version".into()))?;
    let server_version = client.parameter("server_version").unwrap_or("").to_owned();
    let no_role_passwords = match client.simple_query("SELECT 1 FROM pg_catalog.pg_authid LIMIT 1").await {
        Ok(_) => false,
        Err(e) if e.code() == Some(INSUFFICIENT_PRIVILEGE) => {
            let w = "pg_authid is not readable by this user (SQLSTATE 42501): roles are dumped with \
                     --no-role-passwords, their passwords are not in the backup"
                .to_owned();
            tracing::warn!("{w}");
            warnings.push(w);
            true
        }
        Err(e) => {
            return Err(LogicalError::Connect { what: "checking access to pg_authid".into(), error: e });
        }
    };
    let _ = client.close().await;
    let tools = choose(
        opts.connection.pg_bin_dir.as_deref(),
        &opts.connection.tool_search,
        &["pg_dump", "pg_dumpall"],
        server_major,
        Prefer::Closest,
    )
    .await?;
    tracing::info!(server = %server_version, tools = %tools.version, dir = %tools.dir.display(), "logical backup plan");

    let mut common: Vec<OsString> = vec!["--no-password".into()];
    if let Some(db) = &maintenance_db {
        common.push(format!("--database={db}").into());
    }
    let role_pw: Vec<OsString> = if no_role_passwords { vec!["--no-role-passwords".into()] } else { vec![] };
    let content: Vec<OsString> = match (opts.schema_only, opts.data_only) {
        (true, _) => vec!["--schema-only".into()],
        (_, true) => vec!["--data-only".into()],
        _ => vec![],
    };
    let mut sources = Vec::new();
    let source = |kind: DumpKind, path: &str, tool: &str, args: Vec<OsString>, what: String| {
        Ok::<_, LogicalError>(DumpSource {
            kind,
            path: RecordPath::root().join(path).map_err(|e| LogicalError::Restore(e.to_string()))?,
            tool: tools.tool(tool),
            args,
            prepared: prepared.clone(),
            what,
        })
    };
    match &opts.connection.database {
        Some(db) => {
            let mut args = common.clone();
            args.push("--globals-only".into());
            args.extend(role_pw.iter().cloned());
            sources.push(source(
                DumpKind::Globals,
                GLOBALS_FILE,
                "pg_dumpall",
                args,
                "pg_dumpall --globals-only".into(),
            )?);
            let mut args: Vec<OsString> = vec!["--no-password".into(), "--format=custom".into()];
            if !opts.compress {
                args.push("--compress=0".into());
            }
            args.extend(content.iter().cloned());
            sources.push(source(
                DumpKind::Database(db.clone()),
                &dump_file_name(db),
                "pg_dump",
                args,
                format!("pg_dump of database {db:?}"),
            )?);
        }
        None => {
            let mut args = common.clone();
            args.extend(role_pw.iter().cloned());
            args.extend(content.iter().cloned());
            for name in &opts.exclude_databases {
                // A pattern, so quote the name: inside double quotes every character is literal.
                args.push(format!("--exclude-database=\"{}\"", name.replace('"', "\"\"")).into());
            }
            sources.push(source(DumpKind::Cluster, ALL_FILE, "pg_dumpall", args, "pg_dumpall".into())?);
        }
    }
    Ok(BackupPlan { server_major, server_version, tools, no_role_passwords, warnings, sources, prepared })
}

async fn connect_maintenance(prepared: &Prepared) -> Result<(pg_conn::Client, Option<String>), LogicalError> {
    match pg_conn::Client::connect(&prepared.config_for("postgres")?).await {
        Ok(c) => Ok((c, None)),
        Err(e) if e.code() == Some(INVALID_CATALOG_NAME) => {
            let c = pg_conn::Client::connect(&prepared.config_for("template1")?).await.map_err(|source| {
                LogicalError::Connect { what: "connecting to template1".into(), error: source }
            })?;
            Ok((c, Some("template1".into())))
        }
        Err(source) => {
            Err(LogicalError::Connect { what: "connecting to database \"postgres\"".into(), error: source })
        }
    }
}

/// What happened to a dump's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpOutcome {
    /// The whole dump went to the sink and the tool exited 0.
    Stored,
    /// The sink did not want the body ([`Wants::Skip`]): the tool never ran.
    Skipped,
    /// The sink stopped reading ([`Flow::Stop`]): the tool was killed, the file ended.
    Stopped,
}

/// What a [`DumpSource`] reports.
#[derive(Clone, Debug)]
pub struct DumpReport {
    /// The record.
    pub path: RecordPath,
    /// Bytes handed to the sink.
    pub bytes: u64,
    /// What happened.
    pub outcome: DumpOutcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// One record produced by one child: `pg_dumpall --globals-only`, `pg_dump -Fc` or
/// `pg_dumpall`. Implements [`Source`].
pub struct DumpSource {
    kind: DumpKind,
    path: RecordPath,
    tool: std::path::PathBuf,
    args: Vec<OsString>,
    prepared: Arc<Prepared>,
    what: String,
}

impl std::fmt::Debug for DumpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpSource")
            .field("path", &self.path)
            .field("tool", &self.tool)
            .field("args", &self.args)
            .finish()
    }
}

impl DumpSource {
    /// What this source dumps.
    pub fn kind(&self) -> &DumpKind {
        &self.kind
    }

    /// The record it produces.
    pub fn path(&self) -> &RecordPath {
        &self.path
    }

    /// The tool's command line (no secret is ever on it).
    pub fn command_line(&self) -> Vec<OsString> {
        let mut v = vec![self.tool.clone().into_os_string()];
        v.extend(self.args.iter().cloned());
        v
    }

    async fn run_inner<S: RecordSink>(&mut self, sink: &mut S) -> Result<DumpReport, LogicalError> {
        let start = Instant::now();
        let record = Record {
            path: self.path.clone(),
            kind: EntryKind::File { size: None },
            meta: Metadata::synthetic_file(),
        };
        let report =
            |bytes, outcome| DumpReport { path: self.path.clone(), bytes, outcome, elapsed: start.elapsed() };
        if sink.record(&record).await? == Wants::Skip {
            sink.end_file().await?;
            return Ok(report(0, DumpOutcome::Skipped));
        }
        let database = match &self.kind {
            DumpKind::Database(db) => Some(db.as_str()),
            _ => None,
        };
        let mut child = Child::spawn(Spawn {
            tool: self.tool.clone(),
            args: self.args.clone(),
            prepared: &self.prepared,
            database,
            stdin: false,
            stdout: true,
            tolerated_codes: &[],
            what: self.what.clone(),
        })?;
        let mut stdout = child.take_stdout().expect("stdout is piped");
        let mut bytes = 0u64;
        let mut stopped = false;
        let mut header_ok = !matches!(self.kind, DumpKind::Database(_));
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            let mut eof = false;
            while buf.len() < CHUNK {
                let n = stdout
                    .read_buf(&mut buf)
                    .await
                    .map_err(|source| LogicalError::Spawn { tool: self.what.clone(), error: source })?;
                if n == 0 {
                    eof = true;
                    break;
                }
            }
            if !buf.is_empty() {
                if bytes == 0 && buf.len() >= 5 {
                    header_ok = header_ok || buf.starts_with(b"PGDMP");
                }
                bytes += buf.len() as u64;
                let chunk = buf.split().freeze();
                buf.reserve(CHUNK);
                if sink.data(chunk).await? == Flow::Stop {
                    // The consumer's choice: stop the tool, end the file; not a failure.
                    tracing::info!(
                        "{}: the consumer stopped reading {}; the dump was stopped",
                        self.what,
                        self.path
                    );
                    child.kill_group();
                    stopped = true;
                    break;
                }
            }
            if eof {
                break;
            }
        }
        drop(stdout);
        let what = child.what.clone();
        let (status, stderr) = child.wait().await?;
        if !stopped {
            if !status.success() {
                return Err(LogicalError::ChildFailed {
                    what,
                    status: describe_status(&status),
                    stderr_tail: stderr.tail_text(),
                });
            }
            if !header_ok {
                return Err(LogicalError::ChildFailed {
                    what,
                    status: "exit status 0 but the output is not a custom-format archive".into(),
                    stderr_tail: stderr.tail_text(),
                });
            }
            let tail = stderr.tail_text();
            if !tail.trim().is_empty() {
                tracing::warn!("{what}: {}", tail.trim_end());
            }
        }
        sink.end_file().await?;
        Ok(report(bytes, if stopped { DumpOutcome::Stopped } else { DumpOutcome::Stored }))
    }
}

impl Source for DumpSource {
    type Report = DumpReport;
    type Error = LogicalError;

    fn describe(&self) -> String {
        format!("{} → {}", self.what, self.path)
    }

    fn run<S: RecordSink>(
        &mut self,
        sink: &mut S,
    ) -> impl std::future::Future<Output = Result<DumpReport, LogicalError>> + Send {
        self.run_inner(sink)
    }
}
