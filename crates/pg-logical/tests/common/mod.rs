//! Helpers of the logical backup tests: an in-memory sink (the consumer), clusters with an
//! `admin` superuser that has a password, option maps, the walk-order feeder.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use pg_logical::{BackupOptions, RestoreOptions, Restorer, ToolSearch};
use pg_testkit::{Auth, ClusterOptions, TestCluster, User};
use record_sink::{Flow, Record, RecordSink, SinkError, Wants};

pub const ADMIN: &str = "admin";
pub const ADMIN_PW: &str = "adm'n pw\\é";

/// One file as the sink received it.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub path: String,
    pub body: Vec<u8>,
    pub ended: bool,
    pub mtime: std::time::SystemTime,
    pub size: Option<u64>,
}

/// The consumer of the tests: keeps every file in memory; can skip or stop given paths.
#[derive(Default)]
pub struct MemSink {
    pub files: Vec<StoredFile>,
    pub skip: Vec<String>,
    /// Stop reading these paths after their first chunk.
    pub stop: Vec<String>,
    /// Never return from `data` for these paths (a consumer that hangs).
    pub hang: Vec<String>,
}

impl MemSink {
    pub fn file(&self, name: &str) -> &StoredFile {
        self.files.iter().find(|f| f.path == name).unwrap_or_else(|| panic!("no record {name}"))
    }
}

impl RecordSink for MemSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        let size = match record.kind {
            record_sink::EntryKind::File { size } => size,
            _ => None,
        };
        self.files.push(StoredFile {
            path: record.path.as_str().to_owned(),
            body: Vec::new(),
            ended: false,
            mtime: record.meta.mtime,
            size,
        });
        Ok(if self.skip.contains(&record.path.as_str().to_owned()) { Wants::Skip } else { Wants::Body })
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        let f = self.files.last_mut().expect("a file");
        assert!(!f.ended);
        if self.hang.contains(&f.path) {
            std::future::pending::<()>().await;
        }
        f.body.extend_from_slice(&chunk);
        Ok(if self.stop.contains(&f.path) { Flow::Stop } else { Flow::Continue })
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        self.files.last_mut().expect("a file").ended = true;
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        panic!("sources never call finish")
    }

    async fn abort(&mut self, _reason: &str) -> Result<(), SinkError> {
        panic!("sources never call abort")
    }
}

/// The installed client tool sets (tools 14-18 of scripts/setup-postgres).
pub fn tool_search() -> ToolSearch {
    let cache = pg_testkit::cache_dir();
    ToolSearch::dirs((14..=18).map(|m| cache.join(format!("tools-{m}/bin"))))
}

pub fn tools_dir(major: u32) -> PathBuf {
    pg_testkit::cache_dir().join(format!("tools-{major}/bin"))
}

/// A cluster whose TCP connections need a SCRAM password; `admin` is a superuser with one.
pub fn cluster(major: u32, users: &[User]) -> TestCluster {
    let mut o =
        ClusterOptions::new().auth(Auth::ScramSha256).user(User::new(ADMIN).password(ADMIN_PW).superuser());
    for u in users {
        o = o.user(u.clone());
    }
    TestCluster::start_with(major, o).expect("cluster")
}

/// A `postgres://` location for `user` on `cluster` (database `db` when given).
pub fn location(cluster: &TestCluster, user: &str, password: &str, db: Option<&str>) -> String {
    let url = cluster.url(user, Some(password)).replacen("postgresql://", "postgres://", 1);
    let base = url.strip_suffix("/postgres").expect("url ends with /postgres").to_owned();
    match db {
        Some(db) => format!("{base}/{}", percent(db)),
        None => base,
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn backup_options(pairs: &[(&str, &str)]) -> BackupOptions {
    let mut o = BackupOptions::from_map(&map(pairs)).expect("backup options");
    o.connection.tool_search = tool_search();
    o
}

pub fn restore_options(pairs: &[(&str, &str)]) -> RestoreOptions {
    let mut o = RestoreOptions::from_map(&map(pairs)).expect("restore options");
    o.connection.tool_search = tool_search();
    o
}

/// Runs a whole logical backup into a fresh [`MemSink`].
pub async fn backup(opts: &BackupOptions) -> Result<MemSink, pg_logical::LogicalError> {
    let mut sink = MemSink::default();
    backup_into(opts, &mut sink).await?;
    Ok(sink)
}

pub async fn backup_into(opts: &BackupOptions, sink: &mut MemSink) -> Result<(), pg_logical::LogicalError> {
    use record_sink::Source;
    let plan = pg_logical::plan_backup(opts).await?;
    for mut source in plan.into_sources() {
        source.run(sink).await?;
    }
    Ok(())
}

/// Feeds the files to a restorer in Plakar's walk order (`/` first, then names sorted), in
/// 64 KiB chunks; returns each file's outcome.
pub async fn restore_walk(
    restorer: &mut Restorer,
    files: &[(String, Vec<u8>)],
) -> Vec<(String, Result<pg_logical::FileOutcome, String>)> {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    restorer.begin("/", true).await.unwrap();
    let mut out = Vec::new();
    for (path, body) in sorted {
        restorer.begin(path, false).await.unwrap();
        for chunk in body.chunks(64 * 1024) {
            restorer.data(chunk).await.unwrap();
        }
        out.push((path.clone(), restorer.end().await.unwrap()));
    }
    out
}

pub fn files_of(sink: &MemSink) -> Vec<(String, Vec<u8>)> {
    sink.files.iter().map(|f| (f.path.clone(), f.body.clone())).collect()
}

/// Runs a client tool (newest) against `cluster` as `postgres` over the socket; stdout.
pub fn tool(cluster: &TestCluster, name: &str, args: &[&str]) -> String {
    let out = Command::new(pg_testkit::client_bin(name).unwrap())
        .env_clear()
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", "postgres")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `pg_dump --schema-only` of `db`, without the lines that differ between any two runs.
pub fn schema_of(cluster: &TestCluster, db: &str) -> String {
    let conn = format!("dbname={}", pg_config::quote_conninfo_value(db));
    stable(&tool(cluster, "pg_dump", &["--schema-only", "-d", &conn]))
}

/// Drops `\restrict`/`\unrestrict` lines (a random key per run) and version comments.
pub fn stable(text: &str) -> String {
    text.lines()
        .filter(|l| {
            !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("-- Dumped")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_in_group(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid pgrp ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() > 2 && fields[2].parse::<i32>().ok() == Some(pgid) && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// Children of this process whose command is `name`.
pub fn children_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(open) = stat.find('(') else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let live = fields.first().is_some_and(|st| *st != "Z");
        if live && comm == name && fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// Live processes (any parent) started for the plan whose private directory is `private`:
/// their environment points `PGPASSFILE` into it. Tests share one process, so this tells one
/// test's children from another's.
pub fn processes_of(private: &std::path::Path) -> Vec<i32> {
    let needle = format!("PGPASSFILE={}", private.join("pgpass").display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let zombie = stat.rfind(')').is_some_and(|i| stat[i + 2..].starts_with('Z'));
        if !zombie && environ.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}
