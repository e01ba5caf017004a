//! `pgplakar backup logical` and `pgplakar restore logical`: the `pg-logical` library (pg_dump,
//! pg_dumpall, pg_restore, psql as supervised children) through the orchestrator, into and out
//! of a plain directory (`globals.sql` + `<db>.dump`, or `all.sql`, and `manifest.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use backup_plan::{CancellationToken, Plan};
use dir_sink::TreeSink;
use pg_logical::{FileOutcome, Restorer, restore_order};

use crate::backup::run_plan;
use crate::progress::Ui;
use crate::{Interrupted, exit};

/// Connection options shared by backup and restore.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnArgs {
    /// The server: `postgres://user@host:port/db` or libpq keywords; PG* variables and
    /// ~/.pgpass apply.
    #[arg(short = 'd', long, env = "PGPLAKAR_CONNECTION", default_value = "")]
    dbname: String,
    /// The database (instead of the URI's path).
    #[arg(long)]
    database: Option<String>,
    /// Take pg_dump, pg_restore and psql from this directory only.
    #[arg(long, value_name = "DIR")]
    pg_bin_dir: Option<PathBuf>,
}

impl ConnArgs {
    fn map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if !self.dbname.is_empty() {
            m.insert("location".into(), self.dbname.clone());
        }
        if let Some(db) = &self.database {
            m.insert("database".into(), db.clone());
        }
        if let Some(dir) = &self.pg_bin_dir {
            m.insert("pg_bin_dir".into(), dir.display().to_string());
        }
        m
    }
}

/// Options of `pgplakar backup logical`.
#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The directory to create (absent or empty).
    #[arg(short = 'D', long)]
    directory: PathBuf,
    /// Leave databases out of a whole-cluster dump (repeatable).
    #[arg(long, value_name = "DB")]
    exclude_database: Vec<String>,
    /// Schema only (pg_dump -s).
    #[arg(short = 's', long, conflicts_with = "data_only")]
    schema_only: bool,
    /// Data only (pg_dump -a).
    #[arg(short = 'a', long)]
    data_only: bool,
    /// Keep pg_dump's own compression of custom-format dumps (default: uncompressed, for
    /// deduplication).
    #[arg(long)]
    compress: bool,
    /// Do not write manifest.json (the cluster's metadata).
    #[arg(long)]
    no_metadata: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `pgplakar restore logical`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// A directory written by `backup logical`.
    directory: PathBuf,
    #[command(flatten)]
    conn: ConnArgs,
    /// Create the database from the dump (pg_restore -C, connecting to `postgres` first).
    #[arg(long)]
    create_db: bool,
    /// Restore globals.sql (roles, tablespaces) before the dumps.
    #[arg(long)]
    globals: bool,
    /// Do not restore ownership (--no-owner).
    #[arg(long)]
    no_owner: bool,
    /// Schema only.
    #[arg(short = 's', long, conflicts_with = "data_only")]
    schema_only: bool,
    /// Data only.
    #[arg(short = 'a', long)]
    data_only: bool,
    /// Stop at the first error of a dump or script.
    #[arg(short = 'e', long)]
    exit_on_error: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn flag(m: &mut BTreeMap<String, String>, key: &str, on: bool) {
    if on {
        m.insert(key.into(), "true".into());
    }
}

pub(crate) fn run_backup(args: BackupArgs, ui: &Ui) -> Result<u8> {
    let mut map = args.conn.map();
    flag(&mut map, "schema_only", args.schema_only);
    flag(&mut map, "data_only", args.data_only);
    flag(&mut map, "compress", args.compress);
    if !args.exclude_database.is_empty() {
        map.insert("exclude_databases".into(), args.exclude_database.join(","));
    }
    let options = pg_logical::BackupOptions::from_map(&map)?;
    // Everything the dumps need is checked before the directory is created.
    let mut plan = crate::runtime()?.block_on(Plan::logical(&options, !args.no_metadata))?;
    let mut sink = TreeSink::create(&args.directory)?;
    let outcome = run_plan(&mut plan, &mut sink, ui, "logical backup", None, None)?;
    let stats = sink.stats().clone();
    let secs = outcome.elapsed.as_secs_f64();
    let dumps: Vec<_> = outcome.report.logical().collect();
    if args.json {
        let v = serde_json::json!({
            "kind": "logical", "directory": args.directory, "files": stats.files, "bytes": stats.bytes,
            "dumps": dumps.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>(),
            "elapsed_s": secs, "mb_per_s": stats.bytes as f64 / 1e6 / secs.max(1e-9),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "logical backup into {}: {} files, {} bytes, in {:.1?} ({:.0} MB/s)",
            args.directory.display(),
            stats.files,
            stats.bytes,
            outcome.elapsed,
            stats.bytes as f64 / 1e6 / secs.max(1e-9)
        );
    }
    Ok(exit::OK)
}

pub(crate) fn run_restore(args: RestoreArgs, _ui: &Ui) -> Result<u8> {
    let mut map = args.conn.map();
    flag(&mut map, "create_db", args.create_db);
    flag(&mut map, "restore_globals", args.globals);
    flag(&mut map, "no_owner", args.no_owner);
    flag(&mut map, "schema_only", args.schema_only);
    flag(&mut map, "data_only", args.data_only);
    flag(&mut map, "exit_on_error", args.exit_on_error);
    let options = pg_logical::RestoreOptions::from_map(&map)?;
    let mut names: Vec<String> = std::fs::read_dir(&args.directory)
        .with_context(|| format!("cannot read {}", args.directory.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| format!("/{}", e.file_name().to_string_lossy()))
        .filter(|n| !n.ends_with(".partial"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{} holds no backup", args.directory.display());
    }
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let dir = args.directory.clone();
    let (result, interrupted) = crate::run_cancellable(&cancel, async {
        let mut restorer = Restorer::new(options).await?;
        for path in restore_order(names.iter().map(String::as_str)) {
            if cancel.is_cancelled() {
                break;
            }
            let file = tokio::fs::File::open(dir.join(&path[1..]))
                .await
                .with_context(|| format!("opening {path}"))?;
            let restore = restorer.restore_reader(path, file);
            let outcome = tokio::select! {
                () = cancel.cancelled() => {
                    restorer.abort_file();
                    break;
                }
                r = restore => r?,
            };
            match &outcome {
                Ok(FileOutcome::Restored { warnings }) => {
                    tracing::info!("{path}: restored");
                    for w in warnings {
                        tracing::warn!("{path}: {w}");
                    }
                }
                Ok(FileOutcome::Skipped(why)) => tracing::info!("{path}: skipped ({why})"),
                Ok(FileOutcome::Read) => {}
                Err(e) => tracing::error!("{path}: {e}"),
            }
        }
        Ok(restorer.finish().await)
    })?;
    if let Some(signal) = interrupted.signal() {
        return Err(Interrupted(signal).into());
    }
    let report = result?;
    let failures: Vec<(String, String)> =
        report.failures().map(|(p, e)| (p.to_owned(), e.to_owned())).collect();
    if args.json {
        let v = serde_json::json!({
            "kind": "logical restore", "directory": args.directory, "ok": failures.is_empty(),
            "files": report.files.iter().map(|f| serde_json::json!({
                "path": f.path,
                "outcome": match &f.outcome {
                    Ok(FileOutcome::Restored { warnings }) => serde_json::json!({"restored": true, "warnings": warnings}),
                    Ok(FileOutcome::Skipped(why)) => serde_json::json!({"skipped": why}),
                    Ok(FileOutcome::Read) => serde_json::json!({"read": true}),
                    Err(e) => serde_json::json!({"error": e}),
                },
            })).collect::<Vec<_>>(),
            "elapsed_s": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let restored =
            report.files.iter().filter(|f| matches!(f.outcome, Ok(FileOutcome::Restored { .. }))).count();
        println!(
            "restore of {}: {restored} file(s) restored, {} failed, in {:.1?}",
            args.directory.display(),
            failures.len(),
            started.elapsed()
        );
    }
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        bail!("the restore failed: {}", list.join("; "));
    }
    Ok(exit::OK)
}
