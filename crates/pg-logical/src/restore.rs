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
//! # Ordering of `globals.sql`: a one-pass restore
//!
//! Plakar's exporter receives a snapshot depth-first with names sorted, one record after the
//! other, and cannot go back. In this crate's layout `globals.sql` therefore arrives *after*
//! the dump of any database whose encoded name sorts before `globals` (`app.dump` <
//! `globals.sql` < `shop.dump`); in the Go plugin's layout `00000-globals.sql` is always first.
//! A dump needs roles: its owners (`ALTER … OWNER TO`), its grantees and grantors (`GRANT`,
//! `ALTER DEFAULT PRIVILEGES`), the roles of its policies, user mappings and per-role settings.
//! A whole dump is never buffered. With `restore_globals` (and not `data_only`), a custom-format
//! dump that arrives before `globals.sql` is restored in one pass, split in two:
//!
//! 1. Its *head* (header and table of contents, the size of the schema, not of the data; at
//!    most [`HEAD_LIMIT`]) is kept and read ([`crate::archive`]). Every owner named in it, and
//!    with `create_db` every role of an `ALTER ROLE … IN DATABASE` of the database's
//!    properties, that does not exist on the target is created as a placeholder
//!    (`CREATE ROLE "…" NOLOGIN`, the name quoted as an identifier).
//! 2. `pg_restore -L <list>` restores everything else from the head and the rest of the
//!    stream, as it arrives. *Deferred* are: the entries of pg_restore's ACL and post-ACL passes
//!    (`ACL`, `DEFAULT ACL`, `MATERIALIZED VIEW DATA`, `EVENT TRIGGER` and their comments),
//!    `POLICY` and `USER MAPPING` (they name roles), and whatever depends on a deferred entry.
//! 3. When `globals.sql` arrives, `psql` runs it: `CREATE ROLE` of a placeholder fails with
//!    `42710` (tolerated) and the `ALTER ROLE … WITH …` that `pg_dumpall` writes after each
//!    `CREATE ROLE` gives it its attributes and password; memberships follow.
//! 4. Then the deferred entries are restored: `pg_restore -L <deferred>` fed from the kept head
//!    (they have no data block), and the database's own `ACL` entry (which `pg_restore` only
//!    restores together with `CREATE DATABASE`) through `psql`. Their failures are reported on
//!    the `globals.sql` record (the dump's own record is already answered) and in
//!    [`RestoreReport::deferred`].
//! 5. If `globals.sql` never comes (a partial restore), [`Restorer::finish`] restores the
//!    deferred entries anyway; grants to roles that do not exist fail and are reported, and
//!    the placeholders stay `NOLOGIN` without a password ([`RestoreReport::warnings`]).
//!
//! An input that is not a custom-format archive this reader knows is handed to `pg_restore`
//! unsplit (it says what is wrong with it). Without `restore_globals`, or once `globals.sql`
//! was restored, dumps go straight to `pg_restore`. [`restore_order`] remains for callers that
//! can choose the order (a directory on disk): globals first, nothing deferred.
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

use std::collections::BTreeSet;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

use crate::archive::{ArchiveError, Progress, TocEntry, TocReader};
use crate::backup::INVALID_CATALOG_NAME;
use crate::child::{Child, Prepared, Spawn, describe_status};
use crate::error::LogicalError;
use crate::names::{FileKind, classify};
use crate::options::RestoreOptions;
use crate::tools::{Prefer, ToolSet, choose};

/// SQLSTATEs tolerated in `globals.sql` and `all.sql`: `duplicate_object` (a role that exists).
const SCRIPT_TOLERATED: &[&str] = &["42710"];
/// SQLSTATE `duplicate_object`.
const DUPLICATE_OBJECT: &str = "42710";

/// The largest head (header and table of contents) of a dump kept while it waits for
/// `globals.sql`; a bigger one fails the file with an error that says how to proceed.
pub const HEAD_LIMIT: usize = 256 * 1024 * 1024;

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
    /// The deferred entries (privileges, policies, …) of dumps that arrived before
    /// `globals.sql`, restored after it or at [`Restorer::finish`]; `path` is the dump's.
    pub deferred: Vec<FileResult>,
    /// Roles created as `NOLOGIN` placeholders because a dump arrived before `globals.sql`.
    pub placeholders: Vec<String>,
    /// Things the operator must know that are not a file's failure (placeholders that
    /// `globals.sql` never defined).
    pub warnings: Vec<String>,
}

impl RestoreReport {
    /// The files that failed, then the deferred parts that failed.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .chain(&self.deferred)
            .filter_map(|f| f.outcome.as_ref().err().map(|e| (f.path.as_str(), e.as_str())))
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
        /// What is left to restore of this dump once the roles exist.
        deferred: Option<Box<Deferred>>,
    },
    /// The body is read and dropped; the outcome is known.
    Drain(Result<FileOutcome, String>),
    /// A dump that arrived before `globals.sql`: its head is being read (module docs).
    Head(Box<HeadState>),
}

/// A dump whose head is being read.
struct HeadState {
    /// `pg_restore`'s arguments, without a list.
    args: Vec<OsString>,
    target: String,
    reader: TocReader,
    head: Vec<u8>,
}

/// The part of a dump restored once the roles exist.
struct Deferred {
    /// The dump's record path.
    path: String,
    /// The database restored into.
    target: String,
    /// The archive's header and TOC (and maybe the start of its data).
    head: Vec<u8>,
    /// `pg_restore -L` list of the deferred entries (empty: none).
    list: Vec<i32>,
    /// The database's own ACL entry (`GRANT … ON DATABASE`), run through psql.
    database_acl: Option<Vec<u8>>,
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
    /// `globals.sql` was run (whatever its outcome): later dumps are not split.
    globals_done: bool,
    dumps_seen: usize,
    current: Option<(String, Current)>,
    report: RestoreReport,
    /// Deferred parts of dumps restored before `globals.sql`, in order.
    pending: Vec<Deferred>,
    /// Roles created as placeholders.
    placeholders: BTreeSet<String>,
    head_limit: usize,
    lists: usize,
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
            globals_done: false,
            dumps_seen: 0,
            current: None,
            report: RestoreReport::default(),
            pending: Vec::new(),
            placeholders: BTreeSet::new(),
            head_limit: HEAD_LIMIT,
            lists: 0,
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

    /// Lowers [`HEAD_LIMIT`] (tests).
    #[doc(hidden)]
    pub fn set_head_limit(&mut self, limit: usize) {
        self.head_limit = limit;
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
            FileKind::Dump { db, .. } => {
                self.dumps_seen += 1;
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
                let args = self.restore_args(&target, db).await?;
                if self.opts.restore_globals && !self.globals_done && !self.opts.data_only {
                    return Ok(Current::Head(Box::new(HeadState {
                        args,
                        target,
                        reader: TocReader::new(),
                        head: Vec::new(),
                    })));
                }
                self.spawn_restore(kind.clone(), args, &target, None)
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
        Ok(Current::Child { child: Box::new(child), stdin, kind, closed: false, deferred: None })
    }

    /// `pg_restore`'s arguments for a dump into `target` (checked: the target exists, or
    /// `create_db` and it does not).
    async fn restore_args(&self, target: &str, archive_db: &str) -> Result<Vec<OsString>, LogicalError> {
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
        Ok(args)
    }

    fn spawn_restore(
        &self,
        kind: FileKind,
        args: Vec<OsString>,
        target: &str,
        deferred: Option<Box<Deferred>>,
    ) -> Result<Current, LogicalError> {
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
        Ok(Current::Child { child: Box::new(child), stdin, kind, closed: false, deferred })
    }

    /// Writes a `pg_restore -L` list (dump ids, one a line) into the private directory.
    fn write_list(&mut self, ids: impl Iterator<Item = i32>) -> Result<PathBuf, LogicalError> {
        self.lists += 1;
        let path = self.prepared.private_dir().join(format!("list-{}", self.lists));
        let text: String = ids.map(|id| format!("{id}\n")).collect();
        std::fs::write(&path, text)
            .map_err(|source| LogicalError::TempFile { what: "pg_restore list".into(), error: source })?;
        Ok(path)
    }

    /// The head of a dump is read: create the missing roles as placeholders, start
    /// `pg_restore` on everything but the deferred entries and feed it the head.
    async fn start_split(&mut self, path: &str, h: HeadState) -> Result<Current, LogicalError> {
        let HeadState { mut args, target, reader, head } = h;
        let entries = reader.into_entries();
        let plan = split_entries(&entries, self.opts.create_db);
        let mut roles: Vec<Vec<u8>> = Vec::new();
        if !self.opts.no_owner {
            roles.extend(entries.iter().filter_map(|e| e.owner.clone()).filter(|o| !o.is_empty()));
        }
        if self.opts.create_db {
            for e in entries.iter().filter(|e| e.desc == "DATABASE PROPERTIES") {
                roles.extend(roles_in_database_properties(e.defn.as_deref().unwrap_or_default()));
            }
        }
        self.create_placeholders(path, roles).await?;
        let main = self.write_list(plan.main.iter().copied())?;
        args.push("--use-list".into());
        args.push(main.into_os_string());
        let deferred = Box::new(Deferred {
            path: path.to_owned(),
            target: target.clone(),
            head: Vec::new(),
            list: plan.deferred,
            database_acl: plan.database_acl,
        });
        let mut current = self.spawn_restore(
            FileKind::Dump { db: target.clone(), go_layout: false },
            args,
            &target,
            Some(deferred),
        )?;
        if let Current::Child { stdin, closed, deferred: Some(d), .. } = &mut current {
            write_or_close(stdin, closed, &head).await;
            d.head = head;
        }
        tracing::info!(
            "{path}: arrived before globals.sql: restoring it without its privileges until the roles exist"
        );
        Ok(current)
    }

    /// Creates each missing role of `names` as a `NOLOGIN` placeholder.
    async fn create_placeholders(&mut self, path: &str, names: Vec<Vec<u8>>) -> Result<(), LogicalError> {
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for raw in names {
            let name = String::from_utf8(raw).map_err(|e| {
                LogicalError::Restore(format!(
                    "{path}: role name {:?} is not UTF-8; restore globals.sql first",
                    String::from_utf8_lossy(e.as_bytes())
                ))
            })?;
            if name.contains('\0') {
                return Err(LogicalError::Restore(format!("{path}: role name {name:?} contains a NUL byte")));
            }
            if !self.placeholders.contains(&name) {
                wanted.insert(name);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut client = match pg_conn::Client::connect(&self.prepared.config_for("postgres")?).await {
            Ok(c) => c,
            Err(e) if e.code() == Some(INVALID_CATALOG_NAME) => {
                pg_conn::Client::connect(&self.prepared.config_for("template1")?).await.map_err(|source| {
                    LogicalError::Connect {
                        what: "connecting to create placeholder roles".into(),
                        error: source,
                    }
                })?
            }
            Err(source) => {
                return Err(LogicalError::Connect {
                    what: "connecting to create placeholder roles".into(),
                    error: source,
                });
            }
        };
        for name in wanted {
            match client.simple_query(&format!("CREATE ROLE {} NOLOGIN", quote_ident(&name))).await {
                Ok(_) => {
                    tracing::info!(
                        "{path}: created role {name:?} as a NOLOGIN placeholder until globals.sql"
                    );
                    self.placeholders.insert(name.clone());
                    self.report.placeholders.push(name);
                }
                Err(e) if e.code() == Some(DUPLICATE_OBJECT) => {}
                Err(source) => {
                    let _ = client.close().await;
                    return Err(LogicalError::Connect {
                        what: format!("{path}: creating the placeholder role {name:?}"),
                        error: source,
                    });
                }
            }
        }
        let _ = client.close().await;
        Ok(())
    }

    /// Restores the deferred part of a dump; `Err` says what failed.
    async fn apply_deferred(&mut self, d: Deferred) -> Result<(), String> {
        let mut errors: Vec<String> = Vec::new();
        if !d.list.is_empty() {
            match self.restore_deferred_entries(&d).await {
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        }
        if let Some(sql) = &d.database_acl {
            match self.run_sql(&d.target, sql, "the database's privileges").await {
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        }
        let outcome = if errors.is_empty() {
            Ok(FileOutcome::Restored { warnings: vec![] })
        } else {
            Err(format!("{} (deferred privileges): {}", d.path, errors.join(" | ")))
        };
        if let Err(e) = &outcome {
            tracing::warn!("{e}");
        }
        self.report.deferred.push(FileResult { path: d.path.clone(), outcome: outcome.clone() });
        outcome.map(|_| ())
    }

    async fn restore_deferred_entries(&mut self, d: &Deferred) -> Result<(), String> {
        let list = self.write_list(d.list.iter().copied()).map_err(|e| e.to_string())?;
        let mut args: Vec<OsString> = vec![
            "--no-password".into(),
            format!("--dbname=dbname={}", pg_config::quote_conninfo_value(&d.target)).into(),
            "--use-list".into(),
            list.clone().into_os_string(),
        ];
        if self.opts.exit_on_error {
            args.push("--exit-on-error".into());
        }
        if self.opts.no_owner {
            args.push("--no-owner".into());
        }
        if self.opts.schema_only {
            args.push("--schema-only".into());
        }
        let what = format!("pg_restore of the deferred entries into database {:?}", d.target);
        let result = self.run_child("pg_restore", args, None, &d.head, &what, &[]).await;
        let _ = std::fs::remove_file(&list);
        result
    }

    async fn run_sql(&self, db: &str, sql: &[u8], what: &str) -> Result<(), String> {
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
        self.run_child("psql", args, Some(db), sql, &format!("psql of {what} in database {db:?}"), &[]).await
    }

    /// Runs a tool on `input` to its end; `Err` with its stderr's tail (or its script errors).
    async fn run_child(
        &self,
        tool: &str,
        args: Vec<OsString>,
        database: Option<&str>,
        input: &[u8],
        what: &str,
        tolerated_codes: &'static [&'static str],
    ) -> Result<(), String> {
        let mut child = Child::spawn(Spawn {
            tool: self.tools.tool(tool),
            args,
            prepared: &self.prepared,
            database,
            stdin: true,
            stdout: false,
            tolerated_codes,
            what: what.to_owned(),
        })
        .map_err(|e| e.to_string())?;
        let mut stdin = child.take_stdin();
        let mut closed = false;
        write_or_close(&mut stdin, &mut closed, input).await;
        if let Some(mut s) = stdin {
            let _ = s.shutdown().await;
        }
        let (status, stderr) = child.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(LogicalError::ChildFailed {
                what: what.to_owned(),
                status: describe_status(&status),
                stderr_tail: stderr.tail_text(),
            }
            .to_string());
        }
        if stderr.error_count > 0 {
            return Err(format!("{what}: {} error(s): {}", stderr.error_count, stderr.errors.join(" | ")));
        }
        Ok(())
    }

    /// Restores the deferred parts of every dump restored so far.
    async fn apply_pending(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for d in std::mem::take(&mut self.pending) {
            if let Err(e) = self.apply_deferred(d).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Hands over the next chunk of the current file's body (backpressure: resolves when the
    /// child took it).
    pub async fn data(&mut self, chunk: &[u8]) -> Result<(), LogicalError> {
        match &mut self.current {
            None => Err(LogicalError::Restore("data without a file".into())),
            Some((_, Current::Drain(_))) => Ok(()),
            Some((path, Current::Child { stdin, closed, child, .. })) => {
                if stdin.is_some() {
                    write_or_close(stdin, closed, chunk).await;
                    if *closed {
                        // The child stopped reading (it exited, e.g. exit_on_error): drain the
                        // rest; its exit status tells what happened.
                        tracing::debug!("{path}: {} stopped reading its input", child.what);
                    }
                }
                Ok(())
            }
            Some((path, Current::Head(h))) => {
                if h.head.len() + chunk.len() > self.head_limit {
                    let msg = format!(
                        "{path} not restored: its table of contents is larger than {} MiB, too big to keep until \
                         globals.sql arrives; restore globals.sql first (restore_globals=true), then the dumps \
                         with restore_globals=false",
                        self.head_limit / (1024 * 1024)
                    );
                    tracing::warn!("{msg}");
                    self.current = Some((std::mem::take(path), Current::Drain(Err(msg))));
                    return Ok(());
                }
                h.head.extend_from_slice(chunk);
                let step = h.reader.advance(&h.head);
                match step {
                    Ok(Progress::NeedMore(_)) => Ok(()),
                    Ok(Progress::Done(_)) => {
                        let Some((path, Current::Head(h))) = self.current.take() else { unreachable!() };
                        let state = match self.start_split(&path, *h).await {
                            Ok(state) => state,
                            Err(e) => Current::Drain(Err(e.to_string())),
                        };
                        self.current = Some((path, state));
                        Ok(())
                    }
                    Err(e @ (ArchiveError::NotCustomFormat | ArchiveError::UnsupportedVersion(..))) => {
                        // Not something to split: pg_restore gets it whole and says what it is.
                        let Some((path, Current::Head(h))) = self.current.take() else { unreachable!() };
                        tracing::warn!("{path}: {e}: restored unsplit, the roles may not exist yet");
                        let HeadState { args, target, head, .. } = *h;
                        let kind = FileKind::Dump { db: target.clone(), go_layout: false };
                        let state = match self.spawn_restore(kind, args, &target, None) {
                            Ok(mut state) => {
                                if let Current::Child { stdin, closed, .. } = &mut state {
                                    write_or_close(stdin, closed, &head).await;
                                }
                                state
                            }
                            Err(e) => Current::Drain(Err(e.to_string())),
                        };
                        self.current = Some((path, state));
                        Ok(())
                    }
                    Err(e) => {
                        let msg = format!("{path} not restored: {e}");
                        self.current = Some((std::mem::take(path), Current::Drain(Err(msg))));
                        Ok(())
                    }
                }
            }
        }
    }

    /// Ends the current file: closes the child's input, waits for its exit and says how the
    /// file went. An `Err` is a failure of the restore's machinery; a failure of this file is
    /// `Ok(Err(message))` too, so the caller can report it for this record and go on.
    ///
    /// The end of `globals.sql` also restores the deferred parts of the dumps that came before
    /// it (module docs); their failures make this file's outcome an error.
    pub async fn end(&mut self) -> Result<Result<FileOutcome, String>, LogicalError> {
        let Some((path, current)) = self.current.take() else {
            return Err(LogicalError::Restore("end without a file".into()));
        };
        let mut ran_globals = false;
        let outcome = match current {
            Current::Drain(outcome) => outcome,
            Current::Head(h) => Err(format!(
                "{path} not restored: the file ends inside the archive's table of contents ({} bytes): not a \
                 complete pg_dump custom-format archive",
                h.head.len()
            )),
            Current::Child { child, stdin, kind, closed, deferred } => {
                if let Some(mut s) = stdin {
                    let _ = s.shutdown().await;
                    drop(s);
                }
                ran_globals = kind == FileKind::Globals;
                let what = child.what.clone();
                let (status, stderr) = child.wait().await?;
                let tail = stderr.tail_text();
                let outcome = if !status.success() {
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
                    Ok(FileOutcome::Restored { warnings: vec![] })
                };
                // With exit_on_error a failed dump stops there; otherwise pg_restore carried on
                // and the deferred entries are restored as they would have been.
                if let Some(d) = deferred
                    && (outcome.is_ok() || !self.opts.exit_on_error)
                {
                    self.pending.push(*d);
                }
                outcome
            }
        };
        let outcome = if ran_globals {
            self.globals_done = true;
            let errors = self.apply_pending().await;
            match (outcome, errors.is_empty()) {
                (outcome, true) => outcome,
                (Ok(_), false) => Err(format!("{path} restored, but then: {}", errors.join(" | "))),
                (Err(e), false) => Err(format!("{e}; then: {}", errors.join(" | "))),
            }
        } else {
            outcome
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

    /// Ends the restore: a file still open is aborted; the deferred parts of dumps still
    /// waiting for `globals.sql` are restored now (grants to roles that do not exist fail and
    /// are reported); the per-file report. Dropping a restorer instead skips that step.
    pub async fn finish(mut self) -> RestoreReport {
        self.abort_file();
        let waited = !self.pending.is_empty();
        self.apply_pending().await;
        if waited && !self.globals_done && !self.placeholders.is_empty() {
            let names: Vec<&str> = self.placeholders.iter().map(String::as_str).collect();
            let msg = format!(
                "globals.sql was not restored in this run: the roles {} were created as NOLOGIN placeholders \
                 without a password and stay so; restore globals.sql (restore_globals=true) to give them \
                 their attributes",
                names.join(", ")
            );
            tracing::warn!("{msg}");
            self.report.warnings.push(msg);
        }
        std::mem::take(&mut self.report)
    }
}

/// Writes `data` to a child's stdin; when the child stopped reading, drops its stdin and sets
/// `closed` (its exit status will say why).
async fn write_or_close(stdin: &mut Option<ChildStdin>, closed: &mut bool, data: &[u8]) {
    if let Some(s) = stdin
        && s.write_all(data).await.is_err()
    {
        *stdin = None;
        *closed = true;
    }
}

/// How a dump's entries are split (module docs).
#[derive(Debug, PartialEq, Eq)]
struct Split {
    /// Restored with the data, in archive order.
    main: Vec<i32>,
    /// Restored once the roles exist, in archive order.
    deferred: Vec<i32>,
    /// The definition of the database's own ACL entry (only with `create_db`).
    database_acl: Option<Vec<u8>>,
}

/// Entries of pg_restore's ACL and post-ACL passes, and those that name roles in their SQL.
fn deferred_kind(e: &TocEntry) -> bool {
    matches!(
        e.desc.as_str(),
        "ACL"
            | "ACL LANGUAGE"
            | "DEFAULT ACL"
            | "EVENT TRIGGER"
            | "MATERIALIZED VIEW DATA"
            | "POLICY"
            | "USER MAPPING"
    ) || (e.desc == "COMMENT" && e.tag.starts_with("EVENT TRIGGER "))
}

fn split_entries(entries: &[TocEntry], create_db: bool) -> Split {
    let mut deferred: BTreeSet<i32> = BTreeSet::new();
    // Whatever depends on a deferred entry is deferred too (TOC entries only depend on
    // earlier ones, so one pass in archive order is a closure; a second pass covers archives
    // that are not so ordered). Never an entry with a data block: the deferred run reads only
    // the head.
    for _ in 0..2 {
        for e in entries {
            if !e.has_data && (deferred_kind(e) || e.deps.iter().any(|d| deferred.contains(d))) {
                deferred.insert(e.dump_id);
            }
        }
    }
    let is_database_acl = |e: &TocEntry| e.desc == "ACL" && e.tag.starts_with("DATABASE ");
    let mut split = Split { main: Vec::new(), deferred: Vec::new(), database_acl: None };
    for e in entries {
        if is_database_acl(e) {
            // pg_restore restores it only with --create, which would create the database
            // again: psql runs its SQL (only with create_db, as pg_restore would).
            if create_db && let Some(sql) = &e.defn {
                split.database_acl.get_or_insert_with(Vec::new).extend_from_slice(sql);
            }
        } else if deferred.contains(&e.dump_id) {
            split.deferred.push(e.dump_id);
        } else {
            split.main.push(e.dump_id);
        }
    }
    split
}

/// The roles of `ALTER ROLE <role> IN DATABASE …` statements of a `DATABASE PROPERTIES`
/// definition (pg_dump writes one a line, the name as an identifier, quoted when needed).
pub(crate) fn roles_in_database_properties(defn: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in defn.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"ALTER ROLE ") else { continue };
        let (name, after) = if let Some(quoted) = rest.strip_prefix(b"\"") {
            let mut name = Vec::new();
            let mut i = 0;
            let mut end = None;
            while i < quoted.len() {
                if quoted[i] == b'"' {
                    if quoted.get(i + 1) == Some(&b'"') {
                        name.push(b'"');
                        i += 2;
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                name.push(quoted[i]);
                i += 1;
            }
            let Some(end) = end else { continue };
            (name, &quoted[end..])
        } else {
            let n = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            (rest[..n].to_vec(), &rest[n..])
        };
        if !name.is_empty() && after.starts_with(b" IN DATABASE ") {
            out.push(name);
        }
    }
    out
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dump_id: i32, desc: &str, tag: &str, deps: &[i32], defn: Option<&str>) -> TocEntry {
        TocEntry {
            dump_id,
            desc: desc.into(),
            tag: tag.into(),
            owner: Some(b"alice".to_vec()),
            defn: defn.map(|d| d.as_bytes().to_vec()),
            deps: deps.to_vec(),
            has_data: desc == "TABLE DATA",
        }
    }

    #[test]
    fn split_defers_role_dependent_entries_and_their_dependents() {
        let entries = [
            entry(1, "ENCODING", "ENCODING", &[], None),
            entry(2, "DATABASE", "app", &[], None),
            entry(3, "ACL", "DATABASE app", &[2], Some("GRANT CONNECT ON DATABASE app TO bob;\n")),
            entry(4, "DATABASE PROPERTIES", "app", &[], Some("")),
            entry(10, "TABLE", "t", &[], None),
            entry(11, "ACL", "TABLE t", &[10], None),
            entry(12, "MATERIALIZED VIEW", "mv", &[10], None),
            entry(13, "TABLE DATA", "t", &[10], None),
            entry(14, "POLICY", "t p", &[10], None),
            entry(15, "DEFAULT ACL", "DEFAULT PRIVILEGES FOR TABLES", &[], None),
            entry(16, "MATERIALIZED VIEW DATA", "mv", &[12, 9999], None),
            entry(17, "STATISTICS DATA", "mv", &[16], None),
            entry(18, "EVENT TRIGGER", "e", &[], None),
            entry(19, "COMMENT", "EVENT TRIGGER e", &[18], None),
            entry(20, "USER MAPPING", "USER MAPPING bob SERVER s", &[], None),
            entry(21, "TABLE DATA", "odd", &[11], None),
        ];
        let s = split_entries(&entries, true);
        assert_eq!(s.main, [1, 2, 4, 10, 12, 13, 21], "data never waits for the roles");
        assert_eq!(s.deferred, [11, 14, 15, 16, 17, 18, 19, 20]);
        assert_eq!(s.database_acl.as_deref(), Some(&b"GRANT CONNECT ON DATABASE app TO bob;\n"[..]));
        // Without create_db, pg_restore would not restore the database's ACL either.
        assert_eq!(split_entries(&entries, false).database_acl, None);
    }

    #[test]
    fn roles_of_database_properties() {
        let defn = b"ALTER DATABASE app SET search_path TO 'x';\n\
ALTER ROLE bob IN DATABASE app SET work_mem TO '8MB';\n\
ALTER ROLE \"r\xc3\xb4le \"\"sp\xc3\xa9cial\"\"\" IN DATABASE app SET statement_timeout TO '1s';\n\
ALTER ROLE \"unterminated IN DATABASE app\n\
ALTER ROLE carol SET x TO 'y';\n";
        assert_eq!(
            roles_in_database_properties(defn),
            [b"bob".to_vec(), "rôle \"spécial\"".as_bytes().to_vec()]
        );
        assert!(roles_in_database_properties(b"").is_empty());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b; DROP ROLE x"), "\"a\"\"b; DROP ROLE x\"");
    }
}
