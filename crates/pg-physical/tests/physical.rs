//! Physical backups of real clusters 12–18 into the directory sink, verified by
//! `pg_verifybackup`, started by that major's `postgres`, and compared with the source.

mod common;
use common::run;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dir_sink::{DirSink, DirSinkOptions};
use pg_config::Config;
use pg_physical::{BackupOptions, RunOptions, WalMethod};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster, per_major};
use record_sink::NullSink;

/// The source cluster's connection (TCP, trust, superuser).
fn config(cluster: &TestCluster) -> Config {
    Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        cluster.port()
    ))
    .unwrap()
}

fn client(name: &str) -> Command {
    Command::new(pg_testkit::client_bin(name).unwrap())
}

/// A source cluster with pgbench data, a second tablespace, an unlogged table, a large object
/// and oddly named files.
fn source(major: u32, options: ClusterOptions) -> TestCluster {
    let cluster = TestCluster::start_with(major, options.checksums(true).wal_segsize_mb(1)).unwrap();
    run(client("pgbench").args(["-i", "-q", "-s", "5", "-h"]).arg(cluster.socket_dir()).args([
        "-p",
        &cluster.port().to_string(),
        "-U",
        "postgres",
        "postgres",
    ]));
    cluster.create_tablespace("ts one").unwrap();
    cluster
        .sql(
            "create table in_ts tablespace \"ts one\" as select g, md5(g::text) from generate_series(1, 20000) g;
             create unlogged table scratch as select g from generate_series(1, 1000) g;
             select lo_from_bytea(4242, 'a large object');
             create database \"other db\";",
        )
        .unwrap();
    let odd = cluster.data_dir().join("odd name é #1.txt");
    std::fs::write(&odd, "odd\n").unwrap();
    let (uid, gid) = cluster.server_user_ids();
    std::os::unix::fs::chown(&odd, Some(uid), Some(gid)).unwrap();
    cluster
}

fn count_wal_segments(data: &Path) -> u64 {
    std::fs::read_dir(data.join("pg_wal"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.len() == 24 && name.to_string_lossy().chars().all(|c| c.is_ascii_hexdigit())
        })
        .count() as u64
}

struct Restored {
    _scratch: ScratchDir,
    data: PathBuf,
}

async fn backup_into_dir(cluster: &TestCluster, options: &BackupOptions) -> Restored {
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
    let report = common::backup(&config(cluster), options, &RunOptions::default(), &mut sink)
        .await
        .unwrap_or_else(|e| panic!("backup failed: {e}\n{}", cluster.log_contents()));
    assert!(report.summary.files > 900, "{report:?}");
    if cluster.major() >= 13 {
        // Every file but the WAL segments (which no manifest lists) was checked. Fetched
        // segments came in the archive; streamed ones (stream mode) did not.
        let fetched_wal = count_wal_segments(&data) - report.streamed_wal_segments as u64;
        assert_eq!(report.summary.verified_files + fetched_wal, report.summary.files, "{:?}", report.summary);
    }
    pg_testkit::give_to_server_user(scratch.path()).unwrap();
    Restored { _scratch: scratch, data }
}

fn verifybackup(major: u32, data: &Path) {
    if major < 13 {
        return; // no backup_manifest before 13
    }
    // pg_verifybackup must be the backup's major; 13 has no tool set here, 14's reads its
    // manifest but not its WAL (-n).
    let (tool_major, args): (u32, &[&str]) = if major == 13 { (14, &["-n"]) } else { (major, &[]) };
    let bin = pg_testkit::client_bin_for_major("pg_verifybackup", tool_major).unwrap();
    run(Command::new(bin).args(args).arg(data));
}

/// `pg_dumpall` of a cluster, with tablespace locations left out: the restored copy's
/// tablespaces rightly live somewhere else.
fn dumpall(cluster: &TestCluster) -> String {
    let dump = run(client("pg_dumpall")
        .args(["--restrict-key=fixed", "--no-unlogged-table-data", "-h"])
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string(), "-U", "postgres"]));
    dump.lines()
        .map(|l| match (l.starts_with("CREATE TABLESPACE "), l.find(" LOCATION ")) {
            (true, Some(i)) => format!("{} LOCATION <restored>", &l[..i]),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts two dumps are equal, reporting the first line that differs (not megabytes of dump).
fn assert_same_dump(source: &str, restored: &str) {
    if source == restored {
        return;
    }
    let (a, b): (Vec<_>, Vec<_>) = (source.lines().collect(), restored.lines().collect());
    let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    panic!(
        "dumps differ at line {} (source {} lines, restored {}):\n  source:   {:?}\n  restored: {:?}",
        i + 1,
        a.len(),
        b.len(),
        a.get(i),
        b.get(i)
    );
}

per_major!(async fn backup_restore_compare(major) {
    let cluster = source(major, ClusterOptions::new());
    let restored = backup_into_dir(&cluster, &BackupOptions::default()).await;
    assert_eq!(std::fs::read_to_string(restored.data.join("odd name é #1.txt")).unwrap(), "odd\n");
    let link = std::fs::read_link(restored.data.join("pg_tblspc").read_dir().unwrap().next().unwrap().unwrap().path())
        .unwrap();
    assert!(link.starts_with(restored.data.parent().unwrap()), "tablespace link {link:?} must point at the restored copy");
    verifybackup(major, &restored.data);

    let copy = TestCluster::start_existing(major, &restored.data, ClusterOptions::new()).unwrap();
    assert_eq!(copy.sql("select count(*) from in_ts").unwrap(), "20000");
    assert_eq!(copy.sql("select convert_from(lo_get(4242), 'UTF8')").unwrap(), "a large object");
    assert_eq!(copy.sql("select count(*) from scratch").unwrap(), "0", "unlogged tables come back empty");
    assert_eq!(copy.sql("select pg_is_in_recovery()").unwrap(), "f");
    assert_same_dump(&dumpall(&cluster), &dumpall(&copy));
});

/// Sum of each pgbench table's balance column, which pgbench keeps equal.
fn pgbench_sums(cluster: &TestCluster) -> Vec<String> {
    [
        "select sum(abalance) from pgbench_accounts",
        "select sum(bbalance) from pgbench_branches",
        "select sum(tbalance) from pgbench_tellers",
        "select coalesce(sum(delta), 0) from pgbench_history",
    ]
    .iter()
    .map(|q| cluster.sql(q).unwrap())
    .collect()
}

/// Runs pgbench against `cluster` until `stop` is set; forces WAL switches and checkpoints too
/// when `churn` (so fetch mode's WAL would be recycled without its slot).
fn load(cluster: &TestCluster, stop: Arc<AtomicBool>, churn: bool) -> std::thread::JoinHandle<()> {
    let socket = cluster.socket_dir().to_path_buf();
    let port = cluster.port().to_string();
    let pgbench = pg_testkit::client_bin("pgbench").unwrap();
    let psql = pg_testkit::client_bin("psql").unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new(&pgbench)
                .args(["-n", "-T", "1", "-c", "2", "-h"])
                .arg(&socket)
                .args(["-p", &port, "-U", "postgres", "postgres"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "pgbench: {}", String::from_utf8_lossy(&out.stderr));
            if churn {
                Command::new(&psql)
                    .args(["-X", "-q", "-h"])
                    .arg(&socket)
                    .args(["-p", &port, "-U", "postgres", "-c", "select pg_switch_wal(); checkpoint;"])
                    .output()
                    .unwrap();
            }
        }
    })
}

async fn backup_under_load(major: u32, options: ClusterOptions, wal_method: WalMethod, churn: bool) {
    let cluster = source(major, options);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&cluster, stop.clone(), churn);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let options = BackupOptions { wal_method, max_rate: Some(65536), ..BackupOptions::default() };
    let restored = backup_into_dir(&cluster, &options).await;
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    verifybackup(major, &restored.data);
    let copy = TestCluster::start_existing(major, &restored.data, ClusterOptions::new()).unwrap();
    let sums = pgbench_sums(&copy);
    assert!(sums.iter().all(|s| s == &sums[0]), "pgbench invariant broken in the restored copy: {sums:?}");
    let accounts = copy.sql("select count(*) from pgbench_accounts").unwrap();
    assert_eq!(accounts, "500000");
}

per_major!(async fn consistent_under_pgbench_fetch(major) {
    backup_under_load(major, ClusterOptions::new(), WalMethod::Fetch, false).await;
});

per_major!(async fn fetch_survives_wal_recycling(major) {
    let options = ClusterOptions::new().max_wal_size_mb(2).wal_keep_size_mb(0);
    backup_under_load(major, options, WalMethod::Fetch, true).await;
});

per_major!(async fn stream_mode_under_wal_recycling(major) {
    let options = ClusterOptions::new().max_wal_size_mb(2).wal_keep_size_mb(0);
    backup_under_load(major, options, WalMethod::Stream, true).await;
});

per_major!(async fn nothing_left_on_the_server(major) {
    let cluster = TestCluster::start(major).unwrap();
    let mut sink = NullSink::new();
    for wal_method in [WalMethod::Fetch, WalMethod::Stream] {
        let options = BackupOptions { wal_method, ..BackupOptions::default() };
        common::backup(&config(&cluster), &options, &RunOptions::default(), &mut sink).await.unwrap();
    }
    // Temporary slots die with their connections; give the walsenders a moment to exit.
    for _ in 0..50 {
        let slots = cluster.sql("select count(*) from pg_replication_slots").unwrap();
        let senders = cluster.sql("select count(*) from pg_stat_replication").unwrap();
        if slots == "0" && senders == "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replication slots or walsenders left behind");
});
