//! The logical restore: records of a logical backup, in the order a walk delivers them, into a
//! PostgreSQL server.
//!
//! Dispatch by file name (paths directly below `/`; directories are accepted and ignored):
//!
//! | file | action |
//! |---|---|
//! | `<db>.dump`, `NNNNN-<db>.dump` | `pg_restore` into `<db>` (or `database`); with `create_db`, `pg_restore -C` connected first to `postgres` |
//! | `globals.sql`, `00000-globals.sql` | `psql` on `postgres`, only with `restore_globals` |
//! | `all.sql` | `psql` on `postgres` (or `database`), always |
//! | `manifest.json` | read, not restored |
//! | anything else | an error for that file |
//!
//! # Ordering of `globals.sql`
//!
//! Plakar's exporter receives a snapshot depth-first with names sorted, one record after the
//! other, and cannot go back. In this crate's layout `globals.sql` therefore arrives *after*
//! the dump of any database whose encoded name sorts before `globals` (`app.dump` <
//! `globals.sql` < `shop.dump`); in the Go plugin's layout `00000-globals.sql` is always first.
//! The roles must exist before `pg_restore` runs (owners, grants), and buffering a whole dump
//! until the globals arrive is out of the question. So, with `restore_globals`:
//!
//! - a dump that arrives before `globals.sql` is **not restored**: its body is drained and its
//!   result is an error that says so and how to proceed (restore `globals.sql` first, e.g.
//!   `plakar restore -o restore_globals=true <snap>:/globals.sql`, then the dumps with
//!   `restore_globals=false`); `globals.sql` itself is still restored when it comes;
//! - a caller that can choose the order (a directory, a test) lists the paths first and feeds
//!   them in [`restore_order`], which puts the globals first.
//!
//! Without `restore_globals` the order does not matter.
//!
//! # Errors of SQL scripts
//!
//! `pg_dumpall` scripts always contain `CREATE ROLE` for the role running the restore, which
//! fails with `42710` (duplicate object) on any real target; stopping there (`ON_ERROR_STOP`)
//! would leave every later role uncreated. Scripts therefore run to their end with
//! `VERBOSITY=verbose`, and their errors are classified by SQLSTATE: `42710` is tolerated
//! (counted), any other error is reported: as a failure of the file with `exit_on_error`, as a
//! warning of the file without it. `pg_restore` takes `-e` with `exit_on_error` and stops at the
//! first error; without it, it continues and its non-zero exit still fails the file.

use std::ffi::OsString;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

use crate::backup::INVALID_CATALOG_NAME;
use crate::child::{Child, Prepared, Spawn, describe_status};
use crate::error::LogicalError;
use crate::names::{FileKind, classify};
use crate::options::RestoreOptions;
use crate::tools::{Prefer, ToolSet, choose};

/// SQLSTATEs tolerated in `globals.sql` and `all.sql`: `duplicate_object` (a role that exists).
const SCRIPT_TOLERATED: &[&str] = &["42710"];

/// What happened to one file of a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// Restored; `warnings` holds script errors that were not fatal.
    Restored {
        /// Non-fatal problems (script errors without `exit_on_error`).
        warnings: Vec<String>,
    },
    /// Read, not restored (`manifest.json`), or a directory.
    Read,
    /// Not restored by choice (e.g. `globals.sql` without `restore_globals`).
    Skipped(String),
}

/// One file's result.
#[derive(Debug)]
pub struct FileResult {
    /// The record path.
    pub path: String,
    /// Its outcome, or why it failed.
    pub outcome: Result<FileOutcome, String>,
}

/// What a restore did, file by file.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Every file seen, in order.
    pub files: Vec<FileResult>,
}

impl RestoreReport {
    /// The files that failed.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().filter_map(|f| f.outcome.as_ref().err().map(|e| (f.path.as_str(), e.as_str())))
    }
}

/// Sorts paths so that a restore fed in this order never defers a dump: globals first, then
/// dumps and scripts in name order, `manifest.json` last.
pub fn restore_order<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = paths.into_iter().collect();
    let rank = |p: &str| match classify(p.rsplit('/').next().unwrap_or(p)) {
        Ok(Some(FileKind::Globals)) => 0,
        Ok(Some(FileKind::Manifest)) => 2,
        _ => 1,
    };
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    v
}

enum Current {
    /// A child consuming the body.
    Child {
        child: Box<Child>,
        stdin: Option<ChildStdin>,
        kind: FileKind,
        /// The child stopped reading (it exited early): the rest is drained, and its exit
        /// status says whether that was a failure.
        closed: bool,
    },
    /// The body is read and dropped; the outcome is known.
    Drain(Result<FileOutcome, String>),
}

/// A logical restore into one server. See the [module docs](self).
///
/// For each record: [`Restorer::begin`], then [`Restorer::data`] for each chunk of a file's
/// body, then [`Restorer::end`] (or [`Restorer::abort_file`] when the body was cut short);
/// finally [`Restorer::finish`]. Dropping a restorer kills a running child's process group.
pub struct Restorer {
    opts: RestoreOptions,
    prepared: Arc<Prepared>,
    tools: ToolSet,
    target_major: u32,
    globals_restored: bool,
    dumps_seen: usize,
    current: Option<(String, Current)>,
    report: RestoreReport,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer")
            .field("tools", &self.tools)
            .field("target_major", &self.target_major)
            .finish()
    }
}

impl Restorer {
    /// Connects to the target once (its version), and chooses `pg_restore` and `psql` of the
    /// oldest installed major at least as new as the target (unless `pg_bin_dir` is set): a
    /// newer `pg_restore` sends settings an older server does not know (`SET
    /// transaction_timeout` from 17 on), and an archive made for this target's major or an
    /// older one is readable by it.
    pub async fn new(opts: RestoreOptions) -> Result<Self, LogicalError> {
        let prepared = Prepared::new(&opts.connection)?;
        let cfg = prepared.config_for(opts.connection.database.as_deref().unwrap_or("postgres"))?;
        let client = match pg_conn::Client::connect(&cfg).await {
            Ok(c) => c,
            Err(e) if e.code() == Some(INVALID_CATALOG_NAME) => {
                pg_conn::Client::connect(&prepared.config_for("template1")?).await.map_err(|source| {
                    LogicalError::Connect { what: "connecting to the target".into(), error: source }
                })?
            }
            Err(source) => {
                return Err(LogicalError::Connect { what: "connecting to the target".into(), error: source });
            }
        };
        let target_major = client
            .server_major()
            .ok_or_else(|| LogicalError::Tools("the target did not report server_version".into()))?;
        let _ = client.close().await;
        let tools = choose(
            opts.connection.pg_bin_dir.as_deref(),
            &opts.connection.tool_search,
            &["pg_restore", "psql"],
            target_major,
            Prefer::Closest,
        )
        .await?;
        Ok(Self {
            opts,
            prepared,
            tools,
            target_major,
            globals_restored: false,
            dumps_seen: 0,
            current: None,
            report: RestoreReport::default(),
        })
    }

    /// The tools chosen.
    pub fn tools(&self) -> &ToolSet {
        &self.tools
    }

    /// The target's major version.
    pub fn target_major(&self) -> u32 {
        self.target_major
    }

    /// Starts a record. `is_dir`: a directory (nothing to restore, no body follows). The
    /// decision about the file (and any error, such as a missing target database) is reported
    /// by [`Restorer::end`], after its body.
    pub async fn begin(&mut self, path: &str, is_dir: bool) -> Result<(), LogicalError> {
        if let Some((open, _)) = &self.current {
            return Err(LogicalError::Restore(format!("{path}: begun while {open} is still open")));
        }
        if is_dir {
            self.report.files.push(FileResult { path: path.to_owned(), outcome: Ok(FileOutcome::Read) });
            return Ok(());
        }
        let state = match self.decide(path).await {
            Ok(state) => state,
            Err(e) => Current::Drain(Err(e.to_string())),
        };
        self.current = Some((path.to_owned(), state));
        Ok(())
    }

    async fn decide(&mut self, path: &str) -> Result<Current, LogicalError> {
        let name = path.strip_prefix('/').unwrap_or(path);
        let unable =
            || LogicalError::Restore(format!("unable to restore {path:?}: not a file of a logical backup"));
        if name.contains('/') {
            return Err(unable());
        }
        let kind =
            classify(name).map_err(|e| LogicalError::Restore(format!("{path}: {e}")))?.ok_or_else(unable)?;
        match &kind {
            FileKind::Manifest => Ok(Current::Drain(Ok(FileOutcome::Read))),
            FileKind::Globals if !self.opts.restore_globals => {
                Ok(Current::Drain(Ok(FileOutcome::Skipped("restore_globals is false".into()))))
            }
            FileKind::Globals => self.spawn_script(kind.clone(), "postgres", "psql of the globals"),
            FileKind::All => {
                let db = self.opts.connection.database.clone().unwrap_or_else(|| "postgres".into());
                self.spawn_script(kind.clone(), &db, "psql of the cluster script")
            }
            FileKind::Dump { db, go_layout } => {
                self.dumps_seen += 1;
                if self.opts.restore_globals && !self.globals_restored && !go_layout {
                    return Err(LogicalError::Restore(format!(
                        "{path} not restored: restore_globals=true needs globals.sql first, but the snapshot's \
                         name order delivers it after this dump; restore globals.sql on its own first \
                         (restore_globals=true), then the dumps with restore_globals=false"
                    )));
                }
                let target = match &self.opts.connection.database {
                    Some(t) if self.dumps_seen > 1 => {
                        return Err(LogicalError::Restore(format!(
                            "{path} not restored: database={t:?} names one target, but this snapshot holds \
                             several dumps; unset database to restore each into its own database"
                        )));
                    }
                    Some(t) => t.clone(),
                    None => db.clone(),
                };
                self.spawn_restore(kind.clone(), &target, db).await
            }
        }
    }

    fn spawn_script(&self, kind: FileKind, db: &str, what: &str) -> Result<Current, LogicalError> {
        let args: Vec<OsString> = [
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
            "-f",
            "-",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let mut child = Child::spawn(Spawn {
            tool: self.tools.tool("psql"),
            args,
            prepared: &self.prepared,
            database: Some(db),
            stdin: true,
            stdout: false,
            tolerated_codes: SCRIPT_TOLERATED,
            what: what.to_owned(),
        })?;
        let stdin = child.take_stdin();
        Ok(Current::Child { child: Box::new(child), stdin, kind, closed: false })
    }

    async fn spawn_restore(
        &self,
        kind: FileKind,
        target: &str,
        archive_db: &str,
    ) -> Result<Current, LogicalError> {
        let exists = match pg_conn::Client::connect(&self.prepared.config_for(target)?).await {
            Ok(c) => {
                let _ = c.close().await;
                true
            }
            Err(e) if e.code() == Some(INVALID_CATALOG_NAME) => false,
            Err(source) => {
                return Err(LogicalError::Connect {
                    what: format!("connecting to database {target:?}"),
                    error: source,
                });
            }
        };
        let mut args: Vec<OsString> = vec!["--no-password".into()];
        let connect_db = if self.opts.create_db {
            if target != archive_db {
                return Err(LogicalError::Restore(format!(
                    "create_db=true creates the archive's own database {archive_db:?}, not {target:?}: unset \
                     database, or create {target:?} and set create_db=false"
                )));
            }
            if exists {
                return Err(LogicalError::Restore(format!(
                    "database {target:?} already exists on the target: set create_db=false to restore into it"
                )));
            }
            args.push("--create".into());
            "postgres"
        } else {
            if !exists {
                return Err(LogicalError::Restore(format!(
                    "database {target:?} does not exist on the target: set create_db=true to create it"
                )));
            }
            target
        };
        args.push(format!("--dbname=dbname={}", pg_config::quote_conninfo_value(connect_db)).into());
        if self.opts.exit_on_error {
            args.push("--exit-on-error".into());
        }
        if self.opts.no_owner {
            args.push("--no-owner".into());
        }
        if self.opts.schema_only {
            args.push("--schema-only".into());
        }
        if self.opts.data_only {
            args.push("--data-only".into());
        }
        let mut child = Child::spawn(Spawn {
            tool: self.tools.tool("pg_restore"),
            args,
            prepared: &self.prepared,
            database: None,
            stdin: true,
            stdout: false,
            tolerated_codes: &[],
            what: format!("pg_restore into database {target:?}"),
        })?;
        let stdin = child.take_stdin();
        Ok(Current::Child { child: Box::new(child), stdin, kind, closed: false })
    }

    /// Hands over the next chunk of the current file's body (backpressure: resolves when the
    /// child took it).
    pub async fn data(&mut self, chunk: &[u8]) -> Result<(), LogicalError> {
        match &mut self.current {
            None => Err(LogicalError::Restore("data without a file".into())),
            Some((_, Current::Drain(_))) => Ok(()),
            Some((path, Current::Child { stdin, closed, child, .. })) => {
                if let Some(s) = stdin
                    && let Err(e) = s.write_all(chunk).await
                {
                    // The child stopped reading (it exited, e.g. exit_on_error): drain the rest;
                    // its exit status tells what happened.
                    tracing::debug!("{path}: {} stopped reading its input: {e}", child.what);
                    *stdin = None;
                    *closed = true;
                }
                Ok(())
            }
        }
    }

    /// Ends the current file: closes the child's input, waits for its exit and says how the
    /// file went. An `Err` is a failure of the restore's machinery; a failure of this file is
    /// `Ok(Err(message))` too, so the caller can report it for this record and go on.
    pub async fn end(&mut self) -> Result<Result<FileOutcome, String>, LogicalError> {
        let Some((path, current)) = self.current.take() else {
            return Err(LogicalError::Restore("end without a file".into()));
        };
        let outcome = match current {
            Current::Drain(outcome) => outcome,
            Current::Child { child, stdin, kind, closed } => {
                if let Some(mut s) = stdin {
                    let _ = s.shutdown().await;
                    drop(s);
                }
                let what = child.what.clone();
                let (status, stderr) = child.wait().await?;
                let tail = stderr.tail_text();
                if !status.success() {
                    Err(LogicalError::ChildFailed {
                        what,
                        status: describe_status(&status),
                        stderr_tail: tail,
                    }
                    .to_string())
                } else if stderr.error_count > 0 {
                    let msg = format!(
                        "{what}: {} error(s) in the script{}: {}",
                        stderr.error_count,
                        if stderr.tolerated > 0 {
                            format!(" (and {} existing role(s), ignored)", stderr.tolerated)
                        } else {
                            String::new()
                        },
                        stderr.errors.join(" | ")
                    );
                    if self.opts.exit_on_error {
                        Err(msg)
                    } else {
                        Ok(FileOutcome::Restored { warnings: vec![msg] })
                    }
                } else {
                    if closed {
                        // It had all it needed (pg_restore --schema-only skips the data blocks).
                        tracing::debug!("{path}: {what} exited 0 before the end of its input");
                    }
                    if kind == FileKind::Globals {
                        self.globals_restored = true;
                    }
                    Ok(FileOutcome::Restored { warnings: vec![] })
                }
            }
        };
        if let Err(e) = &outcome {
            tracing::warn!("{path}: {e}");
        }
        self.report.files.push(FileResult { path, outcome: outcome.clone() });
        Ok(outcome)
    }

    /// The current file's body was cut short (the walk failed mid-file): kill its child, never
    /// treat the partial input as a restore.
    pub fn abort_file(&mut self) {
        if let Some((path, current)) = self.current.take() {
            if let Current::Child { mut child, .. } = current {
                child.kill_group();
            }
            self.report.files.push(FileResult { path, outcome: Err("the input was cut short".into()) });
        }
    }

    /// Restores one file from a reader: [`Restorer::begin`], the body in chunks, [`Restorer::end`].
    pub async fn restore_reader<R: AsyncRead + Unpin>(
        &mut self,
        path: &str,
        mut reader: R,
    ) -> Result<Result<FileOutcome, String>, LogicalError> {
        self.begin(path, false).await?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    self.abort_file();
                    return Err(LogicalError::Restore(format!("{path}: reading the record: {e}")));
                }
            };
            if n == 0 {
                break;
            }
            self.data(&buf[..n]).await?;
        }
        self.end().await
    }

    /// Ends the restore: the per-file report. A file still open is aborted.
    pub fn finish(mut self) -> RestoreReport {
        self.abort_file();
        std::mem::take(&mut self.report)
    }
}
