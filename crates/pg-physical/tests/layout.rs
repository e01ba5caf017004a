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
