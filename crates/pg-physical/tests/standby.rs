//! Backups taken from a hot standby (which operators use to spare the primary), against real
//! primaries and streaming standbys of every major 12–18, while the primary keeps writing:
//! fetch and stream mode, each restored, checked by `pg_verifybackup` (13+) and started. Then a
//! standby promoted in the middle of a stream-mode backup: the backup must fail with a clear
//! error and leave nothing behind (no slot, no walsender, no spool, the directory marked
//! unfinished), as `pg_basebackup` fails (the server refuses to end a backup whose standby was
//! promoted: "the standby was promoted during online backup").

// The per-major figures (wall time, what failed and why) go to the test's stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dir_sink::{DirSink, DirSinkOptions, INCOMPLETE_MARKER};
use pg_config::Config;
use pg_physical::{BackupOptions, BackupReport, PhysicalError, RunOptions, WalMethod};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster, per_major};

fn config(cluster: &TestCluster) -> Config {
    Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        cluster.port()
    ))
    .unwrap()
}

/// A primary with a little data and a streaming standby of it.
fn primary_and_standby(major: u32) -> (TestCluster, TestCluster) {
    let primary =
        TestCluster::start_with(major, ClusterOptions::new().checksums(true).wal_segsize_mb(1)).unwrap();
    primary
        .sql(
            "create table base as select g, md5(g::text) as m from generate_series(1, 20000) g;
             create table load (batch int, n int)",
        )
        .unwrap();
    let standby = TestCluster::start_standby(&primary, ClusterOptions::new()).unwrap();
    assert_eq!(standby.sql("select pg_is_in_recovery()").unwrap(), "t");
    wait_for_replay(&primary, &standby);
    (primary, standby)
}

/// Waits until the standby has replayed everything the primary has written so far.
fn wait_for_replay(primary: &TestCluster, standby: &TestCluster) {
    let target = primary.sql("select pg_current_wal_lsn()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let behind = standby.sql(&format!("select pg_last_wal_replay_lsn() < '{target}'::pg_lsn")).unwrap();
        if behind == "f" {
            return;
        }
        assert!(Instant::now() < deadline, "the standby did not replay up to {target} in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes on the primary until `stop`: batches of 100 rows in one transaction each (so a
/// consistent copy holds a multiple of 100), and a WAL switch now and then.
fn load(primary: &TestCluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    let socket = primary.socket_dir().to_path_buf();
    let port = primary.port().to_string();
    let psql = pg_testkit::client_bin("psql").unwrap();
    std::thread::spawn(move || {
        let mut batch = 0;
        // Bounded: at most 2000 batches, whatever happens to the test.
        while !stop.load(Ordering::Relaxed) && batch < 2000 {
            batch += 1;
            let switch = if batch % 20 == 0 { "select pg_switch_wal();" } else { "" };
            let out = Command::new(&psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&socket)
                .args(["-p", &port, "-U", "postgres", "-c"])
                .arg(format!("insert into load select {batch}, g from generate_series(1, 100) g; {switch}"))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(10));
        }
        batch
    })
}

/// One backup's target: the data directory to create and a private WAL spool parent.
struct Target {
    scratch: ScratchDir,
}

impl Target {
    fn new() -> Self {
        let scratch = ScratchDir::new().unwrap();
        std::fs::create_dir(scratch.path().join("spool")).unwrap();
        Self { scratch }
    }
    fn data(&self) -> PathBuf {
        self.scratch.path().join("pgdata")
    }
    fn run(&self) -> RunOptions {
        RunOptions { spool_dir: Some(self.scratch.path().join("spool")), ..RunOptions::default() }
    }
    fn spool_left(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.scratch.path().join("spool")).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

async fn backup(
    cluster: &TestCluster,
    options: &BackupOptions,
    target: &Target,
) -> Result<BackupReport, PhysicalError> {
    // Keep a failed backup's directory: the tests read the reason in its marker.
    let mut sink_options = DirSinkOptions { keep_on_failure: true, ..DirSinkOptions::new(target.data()) };
    sink_options.sync = false;
    let mut sink = DirSink::create(sink_options).unwrap();
    common::backup(&config(cluster), options, &target.run(), &mut sink).await
}

fn verifybackup(major: u32, data: &Path) {
    if major < 13 {
        return; // no backup_manifest before 13
    }
    // pg_verifybackup must be the backup's major; 13 has no tool set here, 14's reads its
    // manifest but not its WAL (-n).
    let (tool_major, args): (u32, &[&str]) = if major == 13 { (14, &["-n"]) } else { (major, &[]) };
    let bin = pg_testkit::client_bin_for_major("pg_verifybackup", tool_major).unwrap();
    let out = Command::new(bin).args(args).arg(data).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "pg_verifybackup: {}", String::from_utf8_lossy(&out.stderr));
}

/// Slots and walsenders on `cluster` go back to zero within a few seconds.
async fn assert_server_clean(cluster: &TestCluster, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots = cluster.sql("select count(*) from pg_replication_slots").unwrap();
        let senders = cluster
            .sql("select count(*) from pg_stat_activity where backend_type = 'walsender' and application_name <> 'walreceiver'")
            .unwrap();
        if slots == "0" && senders == "0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: left after 10 s: {slots} replication slots, {senders} walsenders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

per_major!(async fn backup_from_a_standby_under_writes(major) {
    let (primary, standby) = primary_and_standby(major);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&primary, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    for wal_method in [WalMethod::Fetch, WalMethod::Stream] {
        let target = Target::new();
        // Slow enough that the primary writes (and the standby replays) during the backup.
        let options = BackupOptions { wal_method, max_rate: Some(16384), ..BackupOptions::default() };
        let report = backup(&standby, &options, &target)
            .await
            .unwrap_or_else(|e| panic!("{wal_method:?} backup from the standby failed: {e}\n{}", standby.log_contents()));
        assert_eq!(report.server.system_identifier.to_string(), primary.sql("select system_identifier from pg_control_system()").unwrap());
        assert!(target.spool_left().is_empty(), "WAL spool left: {:?}", target.spool_left());
        let data = target.data();
        assert!(data.join("standby.signal").exists(), "a standby's backup carries its standby.signal, as pg_basebackup's does");
        verifybackup(major, &data);
        // Restored as a new primary: no standby.signal (an operator's restore).
        std::fs::remove_file(data.join("standby.signal")).unwrap();
        pg_testkit::give_to_server_user(target.scratch.path()).unwrap();
        let copy = TestCluster::start_existing(major, &data, ClusterOptions::new()).unwrap();
        assert_eq!(copy.sql("select pg_is_in_recovery()").unwrap(), "f");
        assert_eq!(copy.sql("select count(*) from base").unwrap(), "20000");
        let rows: u64 = copy.sql("select count(*) from load").unwrap().parse().unwrap();
        assert_eq!(rows % 100, 0, "{wal_method:?}: a torn transaction in the copy ({rows} rows)");
        let batches = copy.sql("select count(distinct batch) = max(batch) from load").unwrap();
        assert!(rows == 0 || batches == "t", "{wal_method:?}: batches missing in the copy");
        assert_server_clean(&standby, "standby").await;
    }
    stop.store(true, Ordering::Relaxed);
    let batches = loader.join().unwrap();
    assert!(batches > 5, "the primary wrote only {batches} batches during the backups");
});

per_major!(async fn standby_promoted_during_a_stream_backup(major) {
    let (primary, standby) = primary_and_standby(major);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&primary, stop.clone());
    let target = Target::new();
    // About 25 MB at 4 MB/s: the promotion lands in the middle.
    let options = BackupOptions { wal_method: WalMethod::Stream, max_rate: Some(4096), ..BackupOptions::default() };
    let started = Instant::now();
    let promote = async {
        // The WAL connection is up once the standby has two walsenders besides none of its own.
        let deadline = Instant::now() + Duration::from_secs(30);
        while standby.sql("select count(*) from pg_stat_activity where backend_type = 'walsender'").unwrap() != "2" {
            assert!(Instant::now() < deadline, "the backup's connections never appeared on the standby");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(standby.sql("select pg_promote()").unwrap(), "t");
    };
    let (result, ()) = tokio::join!(backup(&standby, &options, &target), promote);
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let error = match result {
        Ok(report) => panic!("a backup whose standby was promoted in the middle succeeded: {report:?}"),
        Err(e) => e.to_string(),
    };
    eprintln!("PG {major}: promoted mid-backup, failed after {:.1?}: {error}", started.elapsed());
    assert!(error.contains("promoted"), "the error should say the standby was promoted: {error}");
    assert_eq!(standby.sql("select pg_is_in_recovery()").unwrap(), "f");
    let marker = std::fs::read_to_string(target.data().join(INCOMPLETE_MARKER)).unwrap();
    assert!(marker.contains("promoted"), "the marker should hold the reason: {marker}");
    assert!(!target.data().join("PG_VERSION").exists());
    assert!(target.spool_left().is_empty(), "WAL spool left: {:?}", target.spool_left());
    assert_server_clean(&standby, "promoted standby").await;
});
