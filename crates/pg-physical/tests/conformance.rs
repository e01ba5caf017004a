//! Differential conformance against `pg_basebackup -Fp`: the cases of PostgreSQL's own
//! `src/bin/pg_basebackup/t/010_pg_basebackup.pl`, rebuilt on one real cluster per major 12–18.
//!
//! For every case the same cluster is backed up three times: by `pg_basebackup -Fp` (oracle A),
//! by this crate into the directory sink, then by `pg_basebackup` again (oracle B). The two
//! copies must hold the same entries with the same types and modes, and the same contents
//! wherever the two oracle runs agree (a file that differs between A and B, `global/pg_control`
//! for one, changed on the server between the runs). Left out of the comparison, as the brief
//! of the suite says: the contents of `backup_label` and `backup_manifest`, and the names and
//! contents of WAL segments and which of them have a `.done` (their modes are compared). Then
//! both copies must pass `pg_verifybackup` (13+) and start with that major's `postgres`.
//!
//! Cases (one cluster per major, in this order):
//! 1. default modes, fetch mode: files the server must not copy (`backup_label`,
//!    `tablespace_map`, `postgresql.auto.conf.tmp`, `current_logfiles.tmp`,
//!    `global/pg_internal.init*`, `postmaster.pid`/`.opts`, `backup_manifest`, `.DS_Store`),
//!    contents of `pg_dynshmem`, `pg_notify`, `pg_replslot` (a real slot), `pg_serial`,
//!    `pg_snapshots`, `pg_stat_tmp`, `pg_subtrans` and of `pg_wal`, temporary files and
//!    directories (`pgsql_tmp*`), temporary relations (`t999_999`, …) in the base and in a
//!    tablespace, unlogged relations (only their init forks), two regular tablespaces (one with
//!    `=` in its path), an in-place tablespace where the major has `allow_in_place_tablespaces`,
//!    symbolic links in the data directory (to a file, to a directory, relative), odd names
//!    (spaces, quotes, `=`, a tab, non-ASCII UTF-8, a leading dash) and a 99-byte name;
//! 2. group access (the data directory made 0750/0640 as upstream does, which is what
//!    `initdb --allow-group-access` produces), `pg_wal` and `pg_replslot` as symbolic links to
//!    directories outside, stream mode;
//! 3. both refuse: a 100-byte name (tar's limit), and page checksum failures.
//!
//! The oracle is `pg_basebackup` of the cluster's major; 12 and 13 have no client tool set
//! here (docs/testing.md), so 14's is used for them: which files a backup holds is decided by
//! the server, and 14's client writes a plain backup of a 12 or 13 server as theirs would.
//! `pg_verifybackup` of 13 is likewise 14's, without WAL parsing (`-n`); 12 has no manifest.
//!
//! Not covered, and why: a relation segment over 1 GB (a file that large, sparse or not, is
//! sent whole — about 1 GB of transfer per backup, three backups per major: minutes of CI for
//! a code path, tar's 8 GB member limit aside, that files of any size share); names that are
//! not valid UTF-8 (issue 9 item 4, another helper's change; add them here when it lands).

// The per-major figures (wall time, what failed and why) go to the test's stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dir_sink::{DirSink, DirSinkOptions, INCOMPLETE_MARKER};
use pg_config::Config;
use pg_physical::{BackupOptions, BackupReport, PhysicalError, RunOptions, WalMethod};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster, per_major};

/// The oldest major with a client tool set here (docs/testing.md).
const OLDEST_TOOLS: u32 = 14;

/// A tablespace of the source: its OID and `pg_tablespace_location` (relative for in-place).
#[derive(Clone, Debug)]
struct Tablespace {
    oid: u32,
    location: String,
}

impl Tablespace {
    fn in_place(&self) -> bool {
        !self.location.starts_with('/')
    }
}

/// One cluster of one major and the cases run against it; failures are collected so that one
/// broken case does not hide the others.
struct Suite {
    cluster: TestCluster,
    major: u32,
    scratch: ScratchDir,
    /// Whether the cluster has an in-place tablespace.
    in_place: bool,
    n: usize,
    failures: Vec<String>,
    timings: Vec<String>,
}

impl Suite {
    fn new(major: u32) -> Self {
        let cluster = TestCluster::start_with(
            major,
            ClusterOptions::new().checksums(true).wal_segsize_mb(1).conf("autovacuum = off"),
        )
        .unwrap();
        Self {
            cluster,
            major,
            scratch: ScratchDir::new().unwrap(),
            in_place: false,
            n: 0,
            failures: Vec::new(),
            timings: Vec::new(),
        }
    }

    fn sql(&self, query: &str) -> String {
        self.cluster.sql(query).unwrap_or_else(|e| panic!("{e}"))
    }

    fn data(&self) -> &Path {
        self.cluster.data_dir()
    }

    /// Writes `contents` into the source's data directory as the server would own it.
    fn put(&self, rel: &str, contents: &[u8]) {
        let path = self.data().join(rel);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.own(&path, 0o600);
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.data().join(rel);
        std::fs::create_dir_all(&path).unwrap();
        self.own(&path, 0o700);
        path
    }

    fn own(&self, path: &Path, mode: u32) {
        let (uid, gid) = self.cluster.server_user_ids();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
        if !path.is_symlink() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    fn tablespaces(&self) -> Vec<Tablespace> {
        self.sql(
            "select oid, pg_tablespace_location(oid) from pg_tablespace \
             where spcname not in ('pg_default', 'pg_global') order by oid",
        )
        .lines()
        .map(|l| {
            let (oid, location) = l.split_once('|').unwrap();
            Tablespace { oid: oid.parse().unwrap(), location: location.to_owned() }
        })
        .collect()
    }

    /// A fresh directory for one backup: `<n>-<what>/pgdata` plus `<n>-<what>/ts/<oid>`.
    fn target(&mut self, what: &str) -> PathBuf {
        self.n += 1;
        let dir = self.scratch.path().join(format!("{}-{what}", self.n));
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("spool")).unwrap();
        dir
    }

    /// `pg_basebackup -Fp` into `dir/pgdata`, tablespaces mapped to `dir/ts/<oid>`.
    fn oracle(&mut self, dir: &Path, wal: WalMethod) -> Result<(), String> {
        let tool = pg_testkit::client_bin_for_major("pg_basebackup", self.major.max(OLDEST_TOOLS)).unwrap();
        let mut cmd = Command::new(tool);
        cmd.args(["--no-sync", "-c", "fast", "-Fp", "-X"])
            .arg(match wal {
                WalMethod::Fetch => "fetch",
                WalMethod::Stream => "stream",
                WalMethod::None => "none",
            })
            .arg("-D")
            .arg(dir.join("pgdata"))
            .arg("-h")
            .arg(self.cluster.socket_dir())
            .args(["-p", &self.cluster.port().to_string(), "-U", "postgres"]);
        for ts in self.tablespaces().iter().filter(|t| !t.in_place()) {
            let escape = |p: &str| p.replace('=', "\\=");
            let new = dir.join("ts").join(ts.oid.to_string());
            cmd.arg(format!("-T{}={}", escape(&ts.location), escape(&new.to_string_lossy())));
        }
        let started = Instant::now();
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        self.timings.push(format!("pg_basebackup {:.2}s", started.elapsed().as_secs_f64()));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// This crate's backup into `dir/pgdata`, tablespaces mapped to `dir/ts/<oid>`.
    async fn ours(&mut self, dir: &Path, wal_method: WalMethod) -> Result<BackupReport, PhysicalError> {
        let mut options = DirSinkOptions::new(dir.join("pgdata"));
        options.sync = false;
        for ts in self.tablespaces().iter().filter(|t| !t.in_place()) {
            options.tablespace_mapping.insert(ts.oid, dir.join("ts").join(ts.oid.to_string()));
        }
        let mut sink = DirSink::create(options).unwrap();
        let config = Config::parse(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            self.cluster.port()
        ))
        .unwrap();
        let backup = BackupOptions { wal_method, ..BackupOptions::default() };
        let run = RunOptions { spool_dir: Some(dir.join("spool")), ..RunOptions::default() };
        let started = Instant::now();
        let result = common::backup(&config, &backup, &run, &mut sink).await;
        self.timings.push(format!("ours {:.2}s", started.elapsed().as_secs_f64()));
        result
    }

    fn fail(&mut self, case: &str, what: impl std::fmt::Display) {
        self.failures.push(format!("PG {} {case}: {what}", self.major));
    }

    /// Oracle, ours, oracle; compares, verifies and starts both copies. `check` runs on the
    /// started copy of ours (and of the oracle) and returns what is wrong.
    async fn differential(&mut self, case: &str, wal: WalMethod, check: &[(&str, &str)]) {
        let a = self.target(&format!("{case}-oracle-a"));
        let o = self.target(&format!("{case}-ours"));
        let b = self.target(&format!("{case}-oracle-b"));
        if let Err(e) = self.oracle(&a, wal) {
            return self.fail(case, format!("the oracle failed: {e}"));
        }
        if let Err(e) = self.ours(&o, wal).await {
            return self.fail(case, format!("our backup failed: {e}"));
        }
        if let Err(e) = self.oracle(&b, wal) {
            return self.fail(case, format!("the oracle failed (second run): {e}"));
        }
        let spool_left: Vec<_> = std::fs::read_dir(o.join("spool")).unwrap().collect();
        if !spool_left.is_empty() {
            self.fail(case, format!("WAL spool left behind: {spool_left:?}"));
        }
        let differences = compare(&scan_backup(&a), &scan_backup(&o), &scan_backup(&b));
        if !differences.is_empty() {
            self.fail(case, format!("the copies differ:\n    {}", differences.join("\n    ")));
        }
        for (who, dir) in [("oracle", &a), ("ours", &o)] {
            if let Err(e) = verifybackup(self.major, &dir.join("pgdata")) {
                self.fail(case, format!("{who}: {e}"));
            }
        }
        pg_testkit::give_to_server_user(self.scratch.path()).unwrap();
        for (who, dir) in [("oracle", &a), ("ours", &o)] {
            // Recovery refuses directories in pg_tblspc unless in-place tablespaces are allowed.
            let options = ClusterOptions::new().conf(if self.in_place {
                "allow_in_place_tablespaces = on"
            } else {
                "# no in-place tablespace"
            });
            let copy = match TestCluster::start_existing(self.major, dir.join("pgdata"), options) {
                Ok(copy) => copy,
                Err(e) => {
                    self.fail(case, format!("{who}: the copy does not start: {e}"));
                    continue;
                }
            };
            for (query, expected) in check {
                match copy.sql(query) {
                    Ok(got) if got == *expected => {}
                    Ok(got) => self.fail(case, format!("{who}: {query} gave {got:?}, expected {expected:?}")),
                    Err(e) => self.fail(case, format!("{who}: {query}: {e}")),
                }
            }
        }
        if std::env::var_os("CONFORMANCE_KEEP").is_some() {
            let kept = std::env::temp_dir().join(format!("conformance-pg{}-{}", self.major, self.n));
            let _ = std::process::Command::new("cp").arg("-a").arg(self.scratch.path()).arg(&kept).status();
        }
        for dir in [a, o, b] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Both `pg_basebackup` and ours must refuse; ours leaves only a marked, unfinished copy.
    async fn both_refuse(&mut self, case: &str, needle: &str) {
        let a = self.target(&format!("{case}-oracle"));
        let o = self.target(&format!("{case}-ours"));
        if self.oracle(&a, WalMethod::Fetch).is_ok() {
            self.fail(case, "pg_basebackup succeeded: the case does not test what it should");
        }
        match self.ours(&o, WalMethod::Fetch).await {
            Ok(_) => self.fail(case, "our backup succeeded where pg_basebackup fails"),
            Err(e) if !e.to_string().contains(needle) => {
                self.fail(case, format!("our error does not say {needle:?}: {e}"))
            }
            Err(_) => {}
        }
        let data = o.join("pgdata");
        if data.join("PG_VERSION").exists() || (data.exists() && !data.join(INCOMPLETE_MARKER).exists()) {
            self.fail(case, "the failed backup left something that looks like a data directory");
        }
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(o);
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing two plain backups

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File { len: u64, hash: u64 },
    Link(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Permission bits (not for links).
    mode: Option<u32>,
}

/// Whether `name` is a WAL segment name, or a status file of one.
fn is_wal_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("");
    stem.len() == 24 && stem.chars().all(|c| c.is_ascii_hexdigit())
}

/// Every entry of `dir/pgdata` (and of the tablespaces its `pg_tblspc` links point at) by a
/// normalised path: tablespace links that point at `dir/ts/<oid>` read `<restored ts>`, their
/// trees are listed as `<ts oid>/…`, WAL names as `<segment>` (modes only).
fn scan_backup(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    scan(&dir.join("pgdata"), "", &mut out);
    let links: Vec<(String, String)> = out
        .iter()
        .filter_map(|(k, e)| match (&e.kind, k.strip_prefix("pg_tblspc/")) {
            (Kind::Link(target), Some(oid)) => Some((oid.to_owned(), target.clone())),
            _ => None,
        })
        .collect();
    for (oid, target) in links {
        let mapped = dir.join("ts").join(&oid);
        if Path::new(&target) == mapped {
            out.insert(
                format!("pg_tblspc/{oid}"),
                Entry { kind: Kind::Link("<restored ts>".into()), mode: None },
            );
            scan(&mapped, &format!("<ts {oid}>/"), &mut out);
        }
    }
    // WAL: names and contents are each backup's own, and so is which segments are complete
    // (only those have a `.done`): keep one entry per normalised name, with its type and mode.
    let wal: Vec<String> = out
        .keys()
        .filter(|k| k.starts_with("pg_wal/") && is_wal_name(k.rsplit('/').next().unwrap()))
        .cloned()
        .collect();
    for key in wal {
        let entry = out.remove(&key).unwrap();
        let (parent, name) = key.rsplit_once('/').unwrap();
        let suffix = name.split_once('.').map(|(_, s)| format!(".{s}")).unwrap_or_default();
        let kind = match entry.kind {
            Kind::File { .. } => Kind::File { len: 0, hash: 0 },
            other => other,
        };
        out.insert(format!("{parent}/<segment>{suffix}"), Entry { kind, mode: entry.mode });
    }
    out
}

fn scan(root: &Path, prefix: &str, out: &mut BTreeMap<String, Entry>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let key = format!("{prefix}{name}");
        let mode = Some(meta.mode() & 0o7777);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap().to_string_lossy().into_owned();
            out.insert(key, Entry { kind: Kind::Link(target), mode: None });
        } else if meta.is_dir() {
            out.insert(key.clone(), Entry { kind: Kind::Dir, mode });
            scan(&path, &format!("{key}/"), out);
        } else {
            let mut hasher = DefaultHasher::new();
            let mut file = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.write(&buf[..n]);
            }
            out.insert(key, Entry { kind: Kind::File { len: meta.len(), hash: hasher.finish() }, mode });
        }
    }
}

/// Files whose contents are each backup's own.
const OWN_CONTENTS: &[&str] = &["backup_label", "backup_manifest"];

/// The differences between oracle `a` and ours, contents compared where `a` and `b` agree.
fn compare(
    a: &BTreeMap<String, Entry>,
    ours: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(ours.keys()).collect();
    for key in keys {
        match (a.get(key), ours.get(key)) {
            // Whether a backup's last WAL segment was complete depends on where it ended.
            (Some(_), None) | (None, Some(_)) if key.ends_with("<segment>.done") => {}
            (Some(_), None) => out.push(format!("missing from ours: {key}")),
            (None, Some(e)) => out.push(format!("only in ours: {key} ({e:?})")),
            (Some(x), Some(y)) => {
                let same_kind = match (&x.kind, &y.kind) {
                    (Kind::File { len: l1, hash: h1 }, Kind::File { len: l2, hash: h2 }) => {
                        // Contents are compared where both oracle runs agree on them.
                        let comparable = b.get(key) == Some(x) && !OWN_CONTENTS.contains(&key.as_str());
                        if comparable && (l1, h1) != (l2, h2) {
                            out.push(format!("contents differ: {key} (oracle {l1} bytes, ours {l2} bytes)"));
                        }
                        true
                    }
                    (k1, k2) => k1 == k2,
                };
                if !same_kind {
                    out.push(format!("{key}: oracle {:?}, ours {:?}", x.kind, y.kind));
                } else if x.mode != y.mode {
                    out.push(format!(
                        "{key}: mode {:o} in the oracle, {:o} in ours",
                        x.mode.unwrap_or(0),
                        y.mode.unwrap_or(0)
                    ));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

fn verifybackup(major: u32, data: &Path) -> Result<(), String> {
    if major < 13 {
        return Ok(()); // no backup_manifest before 13
    }
    let (tool_major, args): (u32, &[&str]) = if major == 13 { (14, &["-n"]) } else { (major, &[]) };
    let bin = pg_testkit::client_bin_for_major("pg_verifybackup", tool_major).unwrap();
    let out = Command::new(bin).args(args).arg(data).stdin(Stdio::null()).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("pg_verifybackup {}: {}", data.display(), String::from_utf8_lossy(&out.stderr)))
    }
}

// ---------------------------------------------------------------------------------------------
// The cases

/// Case 1: what the server must leave out, tablespaces, links and names; default modes, fetch.
fn exclusions_tablespaces_links_names(s: &mut Suite) -> Vec<(&'static str, &'static str)> {
    let major = s.major;
    s.cluster.create_tablespace("ts1").unwrap();
    s.cluster.create_tablespace("tbl=spc2").unwrap();
    s.sql(
        "create table t_base as select g from generate_series(1, 1000) g;
         create table t_ts (a int) tablespace ts1; insert into t_ts values (1234);
         create table t_eq (a int) tablespace \"tbl=spc2\"; insert into t_eq values (42);
         create unlogged table base_unlogged (id int); insert into base_unlogged values (1);
         create unlogged table ts_unlogged (id int) tablespace ts1; insert into ts_unlogged values (1);
         select 1 from pg_create_physical_replication_slot('conformance_slot', true);",
    );
    let in_place = s.sql("select count(*) from pg_settings where name = 'allow_in_place_tablespaces'") == "1";
    s.in_place = in_place;
    if in_place {
        s.sql("set allow_in_place_tablespaces = on; create tablespace inplace location ''");
        s.sql("create table t_inplace (a int) tablespace inplace; insert into t_inplace values (5678)");
    }
    s.sql("checkpoint");

    // Files the server must not copy (upstream writes DONOTCOPY into them).
    for name in [
        "backup_label",
        "tablespace_map",
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
        "global/pg_internal.init.123",
        "backup_manifest",
        ".DS_Store",
    ] {
        s.put(name, b"DONOTCOPY");
    }
    assert!(
        s.data().join("global/pg_internal.init").exists(),
        "psql connected: the relcache init file exists"
    );
    // Contents of these directories must not be copied.
    for dir in
        ["pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans", "pg_wal"]
    {
        if s.data().join(dir).is_dir() {
            s.put(&format!("{dir}/conformance_junk"), b"DONOTCOPY");
        }
    }
    // Temporary files and directories.
    s.mkdir("base/pgsql_tmp");
    s.put("base/pgsql_tmp/pgsql_tmp4242.0", b"TEMP_FILE");
    s.put("pgsql_tmp_at_top", b"TEMP_FILE");
    // Temporary relations, in the base and in a tablespace.
    let db_oid = s.sql("select oid from pg_database where datname = 'postgres'");
    for name in ["t999_999", "t9999_999.1", "t999_9999_vm", "t99999_99999_vm.1"] {
        s.put(&format!("base/{db_oid}/{name}"), b"TEMP_RELATION");
    }
    let ts_rel = s.sql("select pg_relation_filepath('t_ts')");
    let ts_db_dir = Path::new(&ts_rel).parent().unwrap().to_string_lossy().into_owned();
    for name in ["t888_888", "t888888_888888_vm.1"] {
        s.put(&format!("{ts_db_dir}/{name}"), b"TEMP_RELATION");
    }
    s.mkdir(&format!("{ts_db_dir}/pgsql_tmp"));
    s.put(&format!("{ts_db_dir}/pgsql_tmp/pgsql_tmp77.1"), b"TEMP_FILE");
    // Links in the data directory (pg_tblspc aside): to a file and a directory outside, relative.
    let outside = s.cluster.cluster_dir().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("file"), "outside\n").unwrap();
    for (link, target) in [
        ("link_to_file", outside.join("file")),
        ("link_to_dir", outside.join("dir")),
        ("link_relative", PathBuf::from("PG_VERSION")),
    ] {
        std::os::unix::fs::symlink(&target, s.data().join(link)).unwrap();
        s.own(&s.data().join(link), 0);
    }
    // Odd and long names (the longest a tar header holds: 99 bytes).
    for name in ["odd name é #1.txt", "quote'and\"double", "a=b", "-leading-dash", "tab\tin name"] {
        s.put(name, b"odd\n");
    }
    s.mkdir("odd dir ü");
    s.put("odd dir ü/inner file", b"inner\n");
    s.put(&"n".repeat(99), b"long\n");

    let mut checks = vec![
        ("select count(*) from t_base", "1000"),
        ("select a from t_ts", "1234"),
        ("select a from t_eq", "42"),
        ("select count(*) from base_unlogged", "0"),
        ("select count(*) from ts_unlogged", "0"),
    ];
    if in_place {
        checks.push(("select a from t_inplace", "5678"));
    } else {
        s.timings.push(format!("PG {major}: no allow_in_place_tablespaces: in-place case not applicable"));
    }
    checks
}

/// Upstream's direct assertions on our copy, so that the comparison is never vacuous.
fn upstream_expectations(s: &mut Suite, dir: &Path) {
    let data = dir.join("pgdata");
    let db_oid = s.sql("select oid from pg_database where datname = 'postgres'");
    let mut wrong = Vec::new();
    for name in [
        "postgresql.auto.conf.tmp",
        "postmaster.opts",
        "postmaster.pid",
        "tablespace_map",
        "current_logfiles.tmp",
        "global/pg_internal.init",
        "global/pg_internal.init.123",
        "pgsql_tmp_at_top",
        "base/pgsql_tmp",
    ] {
        if data.join(name).exists() {
            wrong.push(format!("{name} was copied"));
        }
    }
    for name in ["t999_999", "t9999_999.1", "t999_9999_vm", "t99999_99999_vm.1"] {
        if data.join(format!("base/{db_oid}/{name}")).exists() {
            wrong.push(format!("temporary relation {name} was copied"));
        }
    }
    for dir in
        ["pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"]
    {
        match std::fs::read_dir(data.join(dir)).map(Iterator::count) {
            Ok(0) => {}
            Ok(_) => wrong.push(format!("contents of {dir}/ were copied")),
            Err(e) => wrong.push(format!("{dir}/: {e}")),
        }
    }
    if std::fs::read(data.join("backup_label")).unwrap_or_default() == b"DONOTCOPY" {
        wrong.push("the source's backup_label was copied".into());
    }
    for rel in ["base_unlogged", "ts_unlogged"] {
        let path = s.sql(&format!("select pg_relation_filepath('{rel}')"));
        let (restored, init) = match path.strip_prefix("pg_tblspc/") {
            Some(rest) => {
                let p = dir.join("ts").join(rest);
                (p.clone(), PathBuf::from(format!("{}_init", p.display())))
            }
            None => (data.join(&path), data.join(format!("{path}_init"))),
        };
        if !init.exists() {
            wrong.push(format!("init fork of {rel} missing ({})", init.display()));
        }
        if restored.exists() {
            wrong.push(format!("main fork of unlogged {rel} copied"));
        }
    }
    for w in wrong {
        s.fail("exclusions (upstream assertions)", w);
    }
}

/// Case 2: group access, `pg_wal` and `pg_replslot` linked outside the data directory.
fn group_access_and_linked_dirs(s: &mut Suite) {
    for name in ["backup_label", "tablespace_map"] {
        std::fs::remove_file(s.data().join(name)).unwrap(); // they would disturb the restart
    }
    s.cluster.stop().unwrap();
    let outside = s.cluster.cluster_dir().join("moved");
    std::fs::create_dir_all(&outside).unwrap();
    s.own(&outside, 0o750);
    for dir in ["pg_wal", "pg_replslot"] {
        let moved = outside.join(dir);
        std::fs::rename(s.data().join(dir), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, s.data().join(dir)).unwrap();
        s.own(&s.data().join(dir), 0);
        chmod_group(&moved);
    }
    chmod_group(s.data());
    s.cluster.restart().unwrap();
    assert_eq!(s.sql("show data_directory_mode"), "0750");
}

/// Group access as upstream's `chmod_recursive($pgdata, 0750, 0640)` (links left alone).
fn chmod_group(root: &Path) {
    let meta = std::fs::symlink_metadata(root).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = if meta.is_dir() { 0o750 } else { 0o640 };
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            chmod_group(&entry.unwrap().path());
        }
    }
}

/// Flips the stored checksum of block `block` of `rel` (the server must be stopped).
fn corrupt_page_checksum(path: &Path, block: u64) {
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let offset = block * 8192 + 8; // pd_checksum
    let mut sum = [0u8; 2];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut sum).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[sum[0] ^ 0x5a, sum[1] ^ 0xa5]).unwrap();
}

per_major!(async fn conformance(major) {
    let started = Instant::now();
    let mut s = Suite::new(major);

    // 1. Exclusions, tablespaces, links, names; default modes; fetch.
    let checks = exclusions_tablespaces_links_names(&mut s);
    let ours = s.target("expectations");
    match s.ours(&ours, WalMethod::Fetch).await {
        Ok(_) => upstream_expectations(&mut s, &ours),
        Err(e) => s.fail("exclusions (upstream assertions)", format!("our backup failed: {e}")),
    }
    s.differential("exclusions, tablespaces, links, names (fetch)", WalMethod::Fetch, &checks).await;

    // 2. Group access, linked pg_wal and pg_replslot; stream.
    group_access_and_linked_dirs(&mut s);
    s.differential("group access, linked pg_wal and pg_replslot (stream)", WalMethod::Stream, &checks).await;

    // 3. What both refuse.
    let long = "l".repeat(100);
    s.put(&long, b"long\n");
    s.both_refuse("a 100-byte name", "too long").await;
    std::fs::remove_file(s.data().join(&long)).unwrap();

    let rel = s.sql(
        "create table corrupt1 as select a from generate_series(1, 10000) a;
         select pg_relation_filepath('corrupt1')",
    );
    s.cluster.stop().unwrap();
    corrupt_page_checksum(&s.data().join(&rel), 0);
    s.cluster.restart().unwrap();
    s.both_refuse("a page checksum failure", "checksum").await;

    let failures = std::mem::take(&mut s.failures);
    eprintln!(
        "PG {major}: conformance suite in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        s.timings.join(", ")
    );
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
});
