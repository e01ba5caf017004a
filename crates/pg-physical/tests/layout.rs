//! Where a physical backup puts things on disk, against real servers 12–18 and `pg_basebackup
//! -Fp` of the same cluster as the oracle: in-place tablespaces, relative target directories,
//! the modes of a cluster with group access.

mod common;
use common::run;
use std::path::Path;
use std::process::Command;

use dir_sink::{DirSink, DirSinkOptions};
use pg_config::Config;
use pg_physical::{BackupOptions, RunOptions, WalMethod};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster, per_major};

fn config(cluster: &TestCluster) -> Config {
    Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        cluster.port()
    ))
    .unwrap()
}

fn verifybackup(major: u32, data: &Path) {
    if major < 13 {
        return; // no backup_manifest before 13
    }
    let (tool_major, args): (u32, &[&str]) = if major == 13 { (14, &["-n"]) } else { (major, &[]) };
    let bin = pg_testkit::client_bin_for_major("pg_verifybackup", tool_major).unwrap();
    run(Command::new(bin).args(args).arg(data));
}

/// Backs `cluster` up with `wal_method` into `options` (a dir-sink), or panics with the log.
async fn backup(cluster: &TestCluster, wal_method: WalMethod, options: DirSinkOptions) {
    let mut sink = DirSink::create(options).unwrap();
    let backup = BackupOptions { wal_method, ..BackupOptions::default() };
    common::backup(&config(cluster), &backup, &RunOptions::default(), &mut sink)
        .await
        .unwrap_or_else(|e| panic!("backup failed: {e}\n{}", cluster.log_contents()));
}

/// `pg_basebackup -Fp` of the same major into `dir`, as the oracle.
fn pg_basebackup(cluster: &TestCluster, dir: &Path, extra: &[&str]) {
    let bin = pg_testkit::client_bin_for_major("pg_basebackup", cluster.major().max(14))
        .or_else(|_| pg_testkit::client_bin("pg_basebackup"))
        .unwrap();
    run(Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string(), "-U", "postgres", "-c", "fast", "-D"])
        .arg(dir)
        .args(extra));
}

/// Relative paths of everything under `root`, sorted, with `d`/`f`/`l` for the type.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.push(format!("l {rel}"));
            } else if t.is_dir() {
                out.push(format!("d {rel}"));
                walk(root, &path, out);
            } else {
                out.push(format!("f {rel}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// In-place tablespaces (`allow_in_place_tablespaces`, `LOCATION ''`)

per_major!(async fn in_place_tablespace_is_restored_inside_pg_tblspc(major) {
    let cluster =
        TestCluster::start_with(major, ClusterOptions::new().conf("allow_in_place_tablespaces = on")).unwrap();
    cluster
        .sql(
            "create tablespace inplace location '';
             create table in_place tablespace inplace as select g from generate_series(1, 5000) g;
             checkpoint;",
        )
        .unwrap();
    let oid = cluster.sql("select oid from pg_tablespace where spcname = 'inplace'").unwrap();
    assert_eq!(cluster.sql(&format!("select pg_tablespace_location({oid})")).unwrap(), format!("pg_tblspc/{oid}"));

    for wal_method in [WalMethod::Fetch, WalMethod::Stream] {
        let scratch = ScratchDir::new().unwrap();
        let data = scratch.path().join("pgdata");
        backup(&cluster, wal_method, DirSinkOptions::new(&data)).await;
        let ts = data.join("pg_tblspc").join(&oid);
        let meta = std::fs::symlink_metadata(&ts).unwrap();
        assert!(meta.is_dir(), "{wal_method:?}: pg_tblspc/{oid} is a directory, as on the source");
        assert!(!scratch.path().join("pgdata_tablespaces").exists(), "nothing outside the data directory");

        // The same files as pg_basebackup -Fp puts there.
        let oracle = scratch.path().join("oracle");
        pg_basebackup(&cluster, &oracle, &["-X", "none"]);
        assert_eq!(tree(&ts), tree(&oracle.join("pg_tblspc").join(&oid)), "{wal_method:?}");
        assert!(!tree(&ts).is_empty());

        pg_testkit::give_to_server_user(scratch.path()).unwrap();
        verifybackup(major, &data);
        let copy = TestCluster::start_existing(
            major,
            &data,
            ClusterOptions::new().conf("allow_in_place_tablespaces = on"),
        )
        .unwrap();
        assert_eq!(copy.sql("select count(*) from in_place").unwrap(), "5000", "{wal_method:?}");
    }
});

// ---------------------------------------------------------------------------------------------
// Group access (`initdb --allow-group-access`, data_directory_mode 0750)

/// `chmod -R g+rX`: what `initdb --allow-group-access` makes (directories 0750, files 0640).
fn allow_group_access(dir: &Path) {
    run(Command::new("chmod").args(["-R", "g+rX"]).arg(dir));
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

per_major!(async fn modes_follow_group_access(major) {
    let mut cluster = TestCluster::start(major).unwrap();
    let ts = cluster.create_tablespace("ts").unwrap();
    cluster.sql("create table in_ts tablespace ts as select 1 a").unwrap();
    let oid = cluster.sql("select oid from pg_tablespace where spcname = 'ts'").unwrap();
    cluster.stop().unwrap();
    allow_group_access(cluster.data_dir());
    allow_group_access(&ts);
    cluster.restart().unwrap();
    assert_eq!(cluster.sql("show data_directory_mode").unwrap(), "0750");

    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let ts_copy = scratch.path().join("ts-copy");
    let mut options = DirSinkOptions::new(&data);
    options.tablespace_mapping.insert(oid.parse().unwrap(), ts_copy.clone());
    backup(&cluster, WalMethod::Stream, options).await;
    let oracle = scratch.path().join("oracle");
    let oracle_ts = scratch.path().join("oracle-ts");
    pg_basebackup(&cluster, &oracle, &["-X", "stream", "-T", &format!("{}={}", ts.display(), oracle_ts.display())]);

    // The modes of each kind of thing the backup writes itself (segment names differ between
    // the two backups, their modes must not).
    let modes = |root: &Path, ts: &Path| -> Vec<(String, Vec<String>)> {
        let of = |dir: &Path, filter: &dyn Fn(&str) -> bool| -> Vec<String> {
            let mut m: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| filter(&e.file_name().to_string_lossy()))
                .map(|e| format!("{:o}", mode(&e.path())))
                .collect();
            m.sort();
            m.dedup();
            m
        };
        let mut out = vec![
            ("the data directory".to_owned(), vec![format!("{:o}", mode(root))]),
            ("the tablespace directory".into(), vec![format!("{:o}", mode(ts))]),
            ("pg_wal segments".into(), of(&root.join("pg_wal"), &|n| n.len() == 24)),
            ("pg_wal/archive_status".into(), vec![format!("{:o}", mode(&root.join("pg_wal/archive_status")))]),
            (".done files".into(), of(&root.join("pg_wal/archive_status"), &|n| n.ends_with(".done"))),
        ];
        if major >= 13 {
            out.push(("backup_manifest".into(), vec![format!("{:o}", mode(&root.join("backup_manifest")))]));
        }
        out
    };
    let ours = modes(&data, &ts_copy);
    let theirs = modes(&oracle, &oracle_ts);
    // Whether a backup has .done files depends on where the WAL stream stopped (only complete
    // segments get one): pg_basebackup makes them with the segments' mode.
    let segment_modes = theirs[2].1.clone();
    for ((what, a), (_, b)) in ours.iter().zip(&theirs) {
        let b = if what == ".done files" { &segment_modes } else { b };
        if what != ".done files" {
            assert!(!a.is_empty(), "{what}: none in our backup");
        }
        if !a.is_empty() {
            assert_eq!(a, b, "{what}: our modes differ from pg_basebackup's");
        }
    }
    assert_eq!(mode(&data.join("backup_label")), 0o640);
});
