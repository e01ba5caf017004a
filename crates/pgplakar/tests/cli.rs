//! The command-line tool against a real server: backup (with metadata and a recording), verify,
//! replay, and refused options.

use std::process::{Command, Output};

use pg_testkit::{Auth, ClusterOptions, ScratchDir, TestCluster, User, per_major};

fn pgplakar(args: &[&str]) -> Output {
    pgplakar_env(args, &[])
}

fn pgplakar_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgplakar"));
    command.args(args).env("RUST_LOG", "warn").env("NO_COLOR", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn ok(out: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgplakar failed: {text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

per_major!(fn backup_verify_replay(major) {
    let cluster = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    cluster.sql("create table t as select g from generate_series(1, 1000) g").unwrap();
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let meta = scratch.path().join("meta");
    let recording = scratch.path().join("backup.pgrec");
    let conn = format!("postgres+bin://postgres@127.0.0.1:{}?sslmode=disable", cluster.port());
    let out = ok(pgplakar(&[
        "backup",
        "physical",
        "-d",
        &conn,
        "-D",
        data.to_str().unwrap(),
        "--metadata-dir",
        meta.to_str().unwrap(),
        "--record",
        recording.to_str().unwrap(),
    ]));
    assert!(out.contains("verified against backup_manifest"), "{out}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], 2);
    assert_eq!(manifest["server_version_num"].as_i64().unwrap() / 10000, i64::from(major));

    if major >= 13 {
        let out = ok(pgplakar(&["verify", data.to_str().unwrap()]));
        assert!(out.contains("match backup_manifest"), "{out}");
        // A damaged file is found.
        let version = data.join("PG_VERSION");
        std::fs::write(&version, "99\n").unwrap();
        let out = pgplakar(&["verify", data.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("PG_VERSION"));
    }

    let out = ok(pgplakar(&["replay", recording.to_str().unwrap()]));
    assert!(out.contains("archive base.tar") && out.ends_with("complete\n"), "{out}");
});

#[test]
fn refuses_a_database_in_a_physical_uri() {
    let out =
        pgplakar(&["backup", "physical", "-d", "postgres+bin://u@localhost/mydb", "-D", "/nonexistent/x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a physical backup is the whole cluster"), "{err}");
}

/// `replay` checks file contents against the manifest the stream carries: a recording with one
/// changed byte in a file decodes, but is not `complete`.
#[test]
fn replay_refuses_a_recording_with_a_flipped_content_byte() {
    use std::io::Read;
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/pg17.pgrec.gz");
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(fixture).unwrap()).read_to_end(&mut bytes).unwrap();
    let scratch = ScratchDir::new().unwrap();
    let intact = scratch.path().join("intact.pgrec");
    std::fs::write(&intact, &bytes).unwrap();
    assert!(ok(pgplakar(&["replay", intact.to_str().unwrap()])).contains("complete"));

    let name = b"global/1262\0";
    let at = bytes.windows(name.len()).position(|w| w == name).expect("a tar header for global/1262");
    bytes[at + 512 + 100] ^= 0x01;
    let damaged = scratch.path().join("damaged.pgrec");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = pgplakar(&["replay", damaged.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged recording replayed: {stdout}");
    assert!(!stdout.contains("complete"), "{stdout}");
    assert!(stderr.contains("global/1262"), "{stderr}");
}

/// `backup --metadata-dir` runs the metadata and the base backup as one plan: when the metadata
/// cannot be collected (here the role may replicate but not connect to any database), the base
/// backup never starts and nothing that looks like a data directory is left.
#[test]
fn a_metadata_failure_fails_the_backup() {
    let cluster = TestCluster::start(17).unwrap();
    cluster
        .sql("CREATE ROLE rep LOGIN REPLICATION; REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
        .unwrap();
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let meta = scratch.path().join("meta");
    let conn = format!("postgres+bin://rep@127.0.0.1:{}?sslmode=disable", cluster.port());
    let out = pgplakar(&[
        "backup",
        "physical",
        "-d",
        &conn,
        "-D",
        data.to_str().unwrap(),
        "--metadata-dir",
        meta.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cluster metadata (/manifest.json) failed"), "{err}");
    assert!(err.contains("42501") || err.contains("permission denied"), "{err}");
    assert!(!data.join("PG_VERSION").exists(), "a data directory was left");
    assert!(!data.join("base").exists(), "the base backup ran");
    // Without the metadata the same role backs up fine.
    let data2 = scratch.path().join("pgdata2");
    ok(pgplakar(&["backup", "physical", "-d", &conn, "-D", data2.to_str().unwrap()]));
    assert!(data2.join("PG_VERSION").exists());
}

/// The error line the CLI printed (`{:#}`: the error and its chain of causes), without the log
/// prefix.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "pgplakar succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("no error in {stderr}"));
    line.split_once("ERROR ").map_or(line, |(_, msg)| msg).to_owned()
}

/// Each cause appears once: `text` occurs exactly once in `line`, and no run of 20 bytes of the
/// line occurs twice (an error whose message shows its cause and also returns it from
/// `source()` prints that cause twice under `{:#}`).
fn assert_each_cause_once(line: &str, causes: &[&str]) {
    for cause in causes {
        assert_eq!(line.matches(cause).count(), 1, "{cause:?} should appear once in: {line}");
    }
    const RUN: usize = 20;
    let bytes = line.as_bytes();
    for i in 0..bytes.len().saturating_sub(RUN) {
        let run = &bytes[i..i + RUN];
        let again = bytes[i + 1..].windows(RUN).any(|w| w == run);
        assert!(!again, "{:?} is repeated in: {line}", String::from_utf8_lossy(run));
    }
}

#[test]
fn nested_errors_show_each_cause_once() {
    let scratch = ScratchDir::new().unwrap();
    // Nothing listens on port 1: the socket error, under the connection error, under the step
    // (the base backup alone, or the metadata first).
    let refused = "postgres+bin://alice@127.0.0.1:1?sslmode=disable";
    for (i, metadata) in [false, true].into_iter().enumerate() {
        let data = scratch.path().join(format!("refused{i}"));
        let meta = scratch.path().join(format!("refused-meta{i}"));
        let mut args = vec!["backup", "physical", "-d", refused, "-D", data.to_str().unwrap()];
        if metadata {
            args.extend(["--metadata-dir", meta.to_str().unwrap()]);
        }
        let line = error_line(&pgplakar(&args));
        assert_each_cause_once(&line, &["Connection refused", "port 1", "failed during connect"]);
        assert!(line.contains(if metadata { "cluster metadata" } else { "base backup failed" }), "{line}");
    }

    // A wrong password: the server's FATAL, with its SQLSTATE, under the authentication step.
    let options =
        ClusterOptions::new().auth(Auth::ScramSha256).user(User::new("alice").password("right-secret"));
    let cluster = TestCluster::start_with(17, options).unwrap();
    let conn = format!("postgres+bin://alice@127.0.0.1:{}?sslmode=disable", cluster.port());
    for (i, metadata) in [false, true].into_iter().enumerate() {
        let data = scratch.path().join(format!("password{i}"));
        let meta = scratch.path().join(format!("password-meta{i}"));
        let mut args = vec!["backup", "physical", "-d", &conn, "-D", data.to_str().unwrap()];
        if metadata {
            args.extend(["--metadata-dir", meta.to_str().unwrap()]);
        }
        let out = pgplakar_env(&args, &[("PGPASSWORD", "wrong-secret")]);
        let line = error_line(&out);
        assert_each_cause_once(&line, &["password authentication failed for user \"alice\"", "28P01"]);
        assert!(line.contains("failed during authentication"), "{line}");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains("wrong-secret") && !all.contains("right-secret"), "a password in: {all}");
    }
}

/// `pg_verifybackup` of the backup's major, the oracle, or `None` (with a note) where that
/// major has no tool set installed.
fn pg_verifybackup(cluster: &TestCluster, dir: &std::path::Path) -> Option<bool> {
    match cluster.client_bin_for_major("pg_verifybackup") {
        Ok(tool) => Some(Command::new(tool).arg("-q").arg(dir).output().unwrap().status.success()),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("PostgreSQL {}: {e}: the oracle comparison is not made", cluster.major());
            }
            None
        }
    }
}

// `verify` reads the WAL the manifest names, record by record, and refuses what
// `pg_verifybackup` refuses: a flipped byte in a WAL record, a missing segment, an emptied
// `pg_wal`. The range is made to span segments: 1 MB segments, a throttled backup, and 3 MB of
// WAL written while it streams.
per_major!(fn verify_checks_the_wal(major) {
    if major < 13 {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("PostgreSQL 12 sends no backup_manifest, so verify has no WAL range to read (pg-wal's tests read WAL of 12)");
        }
        return;
    }
    let cluster = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1)).unwrap();
    cluster.sql("create table t as select g, repeat('x', 500) as pad from generate_series(1, 30000) g").unwrap();
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let conn = format!("postgres+bin://postgres@127.0.0.1:{}?sslmode=disable", cluster.port());
    let mut backup = Command::new(env!("CARGO_BIN_EXE_pgplakar"))
        .args(["backup", "physical", "-d", &conn, "-D", data.to_str().unwrap(), "--max-rate", "8192"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let phase = cluster.sql("select phase from pg_stat_progress_basebackup").unwrap();
        if phase.contains("streaming database files") {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "the backup never started streaming files");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cluster.sql("select pg_logical_emit_message(false, 'w', repeat('w', 3000000))").unwrap();
    assert!(backup.wait().unwrap().success());

    let manifest = pg_backup_manifest::Manifest::parse(&std::fs::read(data.join("backup_manifest")).unwrap()).unwrap();
    let range = manifest.wal_ranges()[0];
    let seg = 1 << 20;
    let first = range.start.segment(seg).unwrap();
    let last = range.end.segment(seg).unwrap();
    assert!(last >= first + 2, "the range spans segments: {range:?}");
    let wal = data.join("pg_wal");
    let name = |segno: u64| pg_backup_manifest::Lsn(segno * seg).wal_file_name(range.timeline, seg).unwrap();

    let out = ok(pgplakar(&["verify", data.to_str().unwrap()]));
    assert!(out.contains("WAL record(s) of 1 range(s) verified"), "{out}");
    assert_ne!(pg_verifybackup(&cluster, &data), Some(false));

    let refused = |what: &str, expect: &str| {
        let out = pgplakar(&["verify", data.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "{what}: verify must refuse: {text}");
        assert!(text.contains(expect), "{what}: {text}");
        assert_ne!(pg_verifybackup(&cluster, &data), Some(true), "{what}: pg_verifybackup disagrees");
        // Without WAL parsing the files still match.
        ok(pgplakar(&["verify", "-n", data.to_str().unwrap()]));
    };

    // A flipped byte in the 3 MB record, in a segment after the first.
    let second = wal.join(name(first + 1));
    let original = std::fs::read(&second).unwrap();
    let mut damaged = original.clone();
    damaged[300_000] ^= 0x40;
    std::fs::write(&second, &damaged).unwrap();
    refused("a flipped byte", "incorrect checksum");
    std::fs::write(&second, &original).unwrap();
    ok(pgplakar(&["verify", data.to_str().unwrap()]));

    // A missing segment.
    std::fs::remove_file(&second).unwrap();
    refused("a missing segment", &format!("{}: WAL segment missing", name(first + 1)));
    std::fs::write(&second, &original).unwrap();
    ok(pgplakar(&["verify", data.to_str().unwrap()]));

    // An emptied pg_wal.
    for entry in std::fs::read_dir(&wal).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    refused("an emptied pg_wal", "pg_wal: no WAL segment");
});

// A file and a directory whose names are not UTF-8 in the data directory: the backup succeeds,
// the restored copy has the exact bytes (names and content), and `verify` and the same-major
// `pg_verifybackup` accept it (the manifest carries the names as Encoded-Path).
per_major!(fn names_that_are_not_utf8_are_backed_up(major) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::chown;

    let cluster = TestCluster::start(major).unwrap();
    let (uid, gid) = cluster.server_user_ids();
    let dir = cluster.data_dir().join(OsStr::from_bytes(b"odd\xffdir"));
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join(OsStr::from_bytes(b"caf\xe9 50%"));
    std::fs::write(&file, b"not UTF-8\n").unwrap();
    let plain = cluster.data_dir().join(OsStr::from_bytes(b"x%FF"));
    std::fs::write(&plain, b"valid UTF-8 that reads like an encoded name\n").unwrap();
    for p in [&dir, &file, &plain] {
        chown(p, Some(uid), Some(gid)).unwrap();
    }

    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let conn = format!("postgres+bin://postgres@127.0.0.1:{}?sslmode=disable", cluster.port());
    let out = pgplakar(&["backup", "physical", "-d", &conn, "-D", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("not valid UTF-8").count(), 1, "warned once: {stderr}");

    let restored = data.join(OsStr::from_bytes(b"odd\xffdir")).join(OsStr::from_bytes(b"caf\xe9 50%"));
    assert_eq!(std::fs::read(&restored).unwrap(), b"not UTF-8\n");
    assert_eq!(
        std::fs::read(data.join("x%FF")).unwrap(),
        b"valid UTF-8 that reads like an encoded name\n"
    );
    if major >= 13 {
        let manifest = String::from_utf8(std::fs::read(data.join("backup_manifest")).unwrap()).unwrap();
        assert!(manifest.contains("\"Encoded-Path\""), "the manifest encodes the name");
        ok(pgplakar(&["verify", data.to_str().unwrap()]));
        assert_ne!(pg_verifybackup(&cluster, &data), Some(false), "pg_verifybackup accepts the copy");
    }
});
