//! Every subcommand of the CLI against real servers: physical backup → verify → start, tar
//! output extracted by GNU tar, a tar stream on stdout, `-R` as a streaming standby, record →
//! replay equal to the direct backup, inspect --json, verify catching damage in directories and
//! tars, dry run, and a logical round trip.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pg_testkit::{ClusterOptions, ScratchDir, TestCluster, per_major};

/// A tar archive's entries by path: type and content.
type TarEntries = BTreeMap<String, (tar::EntryType, Vec<u8>)>;

fn pgplakar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgplakar"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "pgplakar failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn conn(cluster: &TestCluster) -> String {
    format!("postgres+bin://postgres@127.0.0.1:{}?sslmode=disable", cluster.port())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const FINGERPRINT: &str = "select count(*) || ' ' || md5(string_agg(g::text, ',' order by g)) from t";

fn sample(cluster: &TestCluster) -> String {
    cluster.sql("create table t as select g from generate_series(1, 5000) g; checkpoint").unwrap();
    cluster.sql(FINGERPRINT).unwrap()
}

/// `verify` of `path` exits 3 and names `what`.
fn assert_mismatch(path: &Path, what: &str) {
    let out = pgplakar(&["verify", s(path)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(what), "{what} not named: {}", text(&out));
}

per_major!(fn physical_backup_verifies_and_starts(major) {
    let cluster = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    let before = sample(&cluster);
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let out = ok(pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-D", s(&data), "--json"]));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["kind"], "physical");
    assert!(summary["files"].as_u64().unwrap() > 100 && summary["bytes"].as_u64().unwrap() > 1_000_000, "{out}");
    if major >= 13 {
        let report: serde_json::Value =
            serde_json::from_str(&ok(pgplakar(&["verify", s(&data), "--json"]))).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        // pg_verifybackup of the same major agrees.
        let tool = pg_testkit::client_bin_for_major("pg_verifybackup", major);
        // The tool sets begin at 14.
        if major >= 14 {
            let out = Command::new(tool.unwrap()).arg(&data).output().unwrap();
            assert!(out.status.success(), "pg_verifybackup: {}", text(&out));
        }
    }
    pg_testkit::give_to_server_user(scratch.path()).unwrap();
    let restored = TestCluster::start_existing(major, &data, ClusterOptions::new()).unwrap();
    assert_eq!(restored.sql(FINGERPRINT).unwrap(), before);
});

/// The members of a tar, by path.
fn tar_members(path: &Path) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let kind = e.header().entry_type();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            (p, (kind, body))
        })
        .collect()
}

/// Writes a tar with the members of `source` after `change` (the tar crate, as an independent
/// writer).
fn rewrite_tar(
    source: &Path,
    dest: &Path,
    change: impl FnOnce(&mut BTreeMap<String, (tar::EntryType, Vec<u8>)>),
) {
    let mut members = tar_members(source);
    change(&mut members);
    let mut builder = tar::Builder::new(std::fs::File::create(dest).unwrap());
    for (path, (kind, body)) in members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory { 0o700 } else { 0o600 });
        h.set_size(body.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        builder.append_data(&mut h, &path, &body[..]).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn tar_output_extracts_with_gnu_tar_starts_and_verifies() {
    // 18: pg_verifybackup reads tar backups from 18 on, and must match the backup's major.
    let major = 18;
    let cluster = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    let before = sample(&cluster);
    let scratch = ScratchDir::new().unwrap();
    let out_dir = scratch.path().join("tars");
    ok(pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-Ft", "-D", s(&out_dir)]));
    let mut names: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["backup_manifest", "base.tar"]);
    assert!(ok(pgplakar(&["verify", s(&out_dir)])).contains("(tar)"));
    // pg_verifybackup reads it too (-n: the WAL is inside base.tar).
    let tool = pg_testkit::client_bin_for_major("pg_verifybackup", major).unwrap();
    let out = Command::new(tool).args(["-n", "-F", "t"]).arg(&out_dir).output().unwrap();
    assert!(out.status.success(), "pg_verifybackup -Ft: {}", text(&out));

    // Damage, one kind per copy: each is found.
    let base = out_dir.join("base.tar");
    let damaged = |name: &str, change: &dyn Fn(&mut TarEntries)| -> PathBuf {
        let dir = scratch.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(out_dir.join("backup_manifest"), dir.join("backup_manifest")).unwrap();
        rewrite_tar(&base, &dir.join("base.tar"), change);
        dir
    };
    let intact = damaged("intact", &|_| {});
    assert!(ok(pgplakar(&["verify", s(&intact)])).contains("match backup_manifest"));
    let flipped = damaged("flipped", &|m| m.get_mut("global/pg_control").unwrap().1[100] ^= 1);
    assert_mismatch(&flipped, "global/pg_control");
    let truncated = damaged("truncated", &|m| {
        m.get_mut("PG_VERSION").unwrap().1.pop();
    });
    assert_mismatch(&truncated, "PG_VERSION");
    let missing = damaged("missing", &|m| {
        m.remove("global/pg_control");
    });
    assert_mismatch(&missing, "global/pg_control");
    let extra = damaged("extra", &|m| {
        m.insert("base/extra_file".into(), (tar::EntryType::Regular, b"x".to_vec()));
    });
    assert_mismatch(&extra, "base/extra_file");
    let cut = scratch.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    std::fs::copy(out_dir.join("backup_manifest"), cut.join("backup_manifest")).unwrap();
    let bytes = std::fs::read(&base).unwrap();
    std::fs::write(cut.join("base.tar"), &bytes[..bytes.len() / 2]).unwrap();
    assert_mismatch(&cut, "base.tar");

    // GNU tar extracts it into a data directory a stock server starts from.
    let data = scratch.path().join("pgdata");
    std::fs::create_dir(&data).unwrap();
    let out = Command::new("tar").arg("-xf").arg(&base).arg("-C").arg(&data).output().unwrap();
    assert!(out.status.success(), "GNU tar: {}", text(&out));
    std::fs::copy(out_dir.join("backup_manifest"), data.join("backup_manifest")).unwrap();
    assert!(ok(pgplakar(&["verify", s(&data)])).contains("(directory)"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    pg_testkit::give_to_server_user(scratch.path()).unwrap();
    let restored = TestCluster::start_existing(major, &data, ClusterOptions::new()).unwrap();
    assert_eq!(restored.sql(FINGERPRINT).unwrap(), before);
}

#[test]
fn a_tar_stream_on_stdout_holds_the_manifest_and_verifies() {
    let cluster = TestCluster::start_with(17, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    sample(&cluster);
    let scratch = ScratchDir::new().unwrap();
    let file = scratch.path().join("base.tar");
    let out = Command::new(env!("CARGO_BIN_EXE_pgplakar"))
        .args(["backup", "physical", "-d", &conn(&cluster), "-Ft", "-D", "-"])
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let members = tar_members(&file);
    assert!(members.contains_key("backup_manifest") && members.contains_key("PG_VERSION"));
    assert!(ok(pgplakar(&["verify", s(&file)])).contains("(tar stream)"));
    // A flipped byte in the stream is found.
    let damaged = scratch.path().join("damaged.tar");
    rewrite_tar(&file, &damaged, |m| m.get_mut("PG_VERSION").unwrap().1[0] ^= 1);
    assert_mismatch(&damaged, "PG_VERSION");
    // Not onto a terminal, not plain format.
    let out = pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-D", "-"]);
    assert!(!out.status.success() && text(&out).contains("-Ft"), "{}", text(&out));
}

#[test]
fn verify_finds_damage_in_a_directory() {
    let cluster = TestCluster::start(17).unwrap();
    sample(&cluster);
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    ok(pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-D", s(&data), "-N"]));
    assert!(ok(pgplakar(&["verify", s(&data)])).contains("match backup_manifest"));
    let copy = |name: &str| {
        let dir = scratch.path().join(name);
        let out = Command::new("cp").arg("-a").arg(&data).arg(&dir).output().unwrap();
        assert!(out.status.success());
        dir
    };
    let d = copy("flipped");
    let mut control = std::fs::read(d.join("global/pg_control")).unwrap();
    control[200] ^= 1;
    std::fs::write(d.join("global/pg_control"), control).unwrap();
    assert_mismatch(&d, "global/pg_control");
    let d = copy("truncated");
    std::fs::write(d.join("PG_VERSION"), "1").unwrap();
    assert_mismatch(&d, "PG_VERSION");
    let d = copy("missing");
    std::fs::remove_file(d.join("global/pg_control")).unwrap();
    assert_mismatch(&d, "global/pg_control");
    let d = copy("extra");
    std::fs::write(d.join("base/extra_file"), "x").unwrap();
    assert_mismatch(&d, "base/extra_file");
    let report: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&pgplakar(&["verify", s(&d), "--json"]).stdout))
            .unwrap();
    assert_eq!(report["ok"], false);
}

#[test]
fn write_recovery_conf_makes_a_streaming_standby() {
    let major = 17;
    let primary = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    sample(&primary);
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("standby");
    ok(pgplakar(&[
        "backup",
        "physical",
        "-d",
        &conn(&primary),
        "-D",
        s(&data),
        "-R",
        "-X",
        "stream",
        "-S",
        "standby_1",
        "-C",
    ]));
    assert!(data.join("standby.signal").exists());
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("primary_conninfo = '") && auto.contains("primary_slot_name = 'standby_1'"),
        "{auto}"
    );
    assert!(!auto.contains("password"), "{auto}");
    // verify ignores the two files, as pg_verifybackup does.
    ok(pgplakar(&["verify", s(&data)]));
    assert_eq!(
        primary.sql("select slot_type from pg_replication_slots where slot_name = 'standby_1'").unwrap(),
        "physical"
    );

    pg_testkit::give_to_server_user(scratch.path()).unwrap();
    let standby = TestCluster::start_existing(major, &data, ClusterOptions::new()).unwrap();
    assert_eq!(standby.sql("select pg_is_in_recovery()").unwrap(), "t");
    primary.sql("insert into t values (100000)").unwrap();
    let want = primary.sql(FINGERPRINT).unwrap();
    let mut got = String::new();
    for _ in 0..100 {
        got = standby.sql(FINGERPRINT).unwrap();
        if got == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, want, "the standby did not receive the primary's change");
    assert_eq!(standby.sql("select status from pg_stat_wal_receiver").unwrap(), "streaming");
    assert_eq!(
        primary.sql("select active from pg_replication_slots where slot_name = 'standby_1'").unwrap(),
        "t"
    );
}

/// All files under `dir` with their modes and contents.
fn tree(dir: &Path) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                stack.push(e.path());
                out.insert(rel, (mode, None));
            } else {
                out.insert(rel, (mode, Some(std::fs::read(e.path()).unwrap())));
            }
        }
    }
    out
}

#[test]
fn record_then_replay_gives_the_direct_backup_and_inspect_json_parses() {
    let cluster = TestCluster::start_with(17, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    sample(&cluster);
    let scratch = ScratchDir::new().unwrap();
    let direct = scratch.path().join("direct");
    let recording = scratch.path().join("session.pgrec");
    // One session, two outputs: the directory written live and the recording of the stream.
    ok(pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-D", s(&direct), "--record", s(&recording)]));
    let replayed = scratch.path().join("replayed");
    let out = ok(pgplakar(&["replay", s(&recording), "-D", s(&replayed)]));
    assert!(out.ends_with("complete\n"), "{out}");
    assert!(tree(&direct) == tree(&replayed), "the replayed directory differs from the direct backup");

    // `record` alone writes the recording and nothing else.
    let alone = scratch.path().join("alone.pgrec");
    let summary: serde_json::Value =
        serde_json::from_str(&ok(pgplakar(&["record", "-d", &conn(&cluster), "-o", s(&alone), "--json"])))
            .unwrap();
    assert!(summary["verified_files"].as_u64().unwrap() > 100, "{summary}");
    assert!(ok(pgplakar(&["replay", s(&alone), "--json"])).contains("\"complete\": true"));

    let out = ok(pgplakar(&["inspect", s(&alone), "--json"]));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["server_major"], 17);
    assert!(lines.iter().any(|l| l["type"] == "Query"), "no Query");
    assert!(
        lines.iter().any(|l| l["type"] == "CopyData: new archive" && l["detail"]["archive"] == "base.tar")
    );
    assert!(lines.iter().any(|l| l["type"] == "CommandComplete"));
    assert!(lines.last().unwrap()["summary"]["archive_data_bytes"].as_u64().unwrap() > 1_000_000);
    let human = ok(pgplakar(&["inspect", s(&alone), "--skip-data", "--limit", "20"]));
    assert!(human.contains("<- ") && human.contains("-> Query"), "{human}");
}

#[test]
fn dry_run_writes_nothing_and_bad_options_fail_before_connecting() {
    let cluster = TestCluster::start(17).unwrap();
    let out = ok(pgplakar(&["backup", "physical", "-d", &conn(&cluster), "--dry-run", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["target"], "nowhere (dry run)");
    assert!(v["verified_files"].as_u64().unwrap() > 100);
    // A slot without streaming is refused before anything runs; usage errors exit 2.
    let out = pgplakar(&["backup", "physical", "-d", &conn(&cluster), "--dry-run", "-S", "s1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("-X stream"), "{}", text(&out));
    assert_eq!(pgplakar(&["backup", "physical", "--no-such-option"]).status.code(), Some(2));
    // No temporary slot is left behind.
    assert_eq!(cluster.sql("select count(*) from pg_replication_slots").unwrap(), "0");
}

#[test]
fn refused_replication_says_what_to_do() {
    let cluster = TestCluster::start_with(17, ClusterOptions::new().replication_in_hba(false)).unwrap();
    let scratch = ScratchDir::new().unwrap();
    let out = pgplakar(&["backup", "physical", "-d", &conn(&cluster), "-D", s(&scratch.path().join("d"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("hint: the server refused a replication connection"), "{}", text(&out));
    assert!(!scratch.path().join("d").join("PG_VERSION").exists());
}

#[test]
fn logical_backup_and_restore_round_trip() {
    let source = TestCluster::start(17).unwrap();
    source.sql("create database app").unwrap();
    source
        .sql_db("app", "create table t as select g from generate_series(1, 5000) g; create view v as select count(*) from t")
        .unwrap();
    let before = source.sql_db("app", FINGERPRINT).unwrap();
    let scratch = ScratchDir::new().unwrap();
    let dir = scratch.path().join("logical");
    let uri = format!("postgres://postgres@127.0.0.1:{}/app?sslmode=disable", source.port());
    let bin = pg_testkit::client_bin_for_major("pg_dump", 17).unwrap();
    let bin_dir = bin.parent().unwrap().to_str().unwrap().to_owned();
    let out =
        ok(pgplakar(&["backup", "logical", "-d", &uri, "-D", s(&dir), "--pg-bin-dir", &bin_dir, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "logical");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["app.dump", "globals.sql", "manifest.json"]);

    let target = TestCluster::start(17).unwrap();
    let to = format!("postgres://postgres@127.0.0.1:{}/app?sslmode=disable", target.port());
    let out = ok(pgplakar(&[
        "restore",
        "logical",
        s(&dir),
        "-d",
        &to,
        "--create-db",
        "--pg-bin-dir",
        &bin_dir,
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(target.sql_db("app", FINGERPRINT).unwrap(), before);
    assert_eq!(target.sql_db("app", "select * from v").unwrap(), "5000");
}
