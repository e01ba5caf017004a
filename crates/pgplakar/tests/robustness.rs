//! `pgplakar backup` when things go wrong, against real servers: failures remove what the backup
//! made (unless `--no-clean`), SIGINT/SIGTERM stop it cleanly, relative directories work, and
//! `--help` shows no password.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pg_testkit::{Auth, ClusterOptions, ScratchDir, TestCluster, User, per_major};

fn pgplakar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgplakar"));
    cmd.env("RUST_LOG", "info").env_remove("PGPLAKAR_CONNECTION").stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn conn(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=postgres sslmode=disable {extra}")
}

/// Slots and walsenders on the server go back to zero within a few seconds.
fn assert_server_clean(cluster: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots = cluster.sql("select count(*) from pg_replication_slots").unwrap();
        let senders =
            cluster.sql("select count(*) from pg_stat_activity where backend_type = 'walsender'").unwrap();
        if slots == "0" && senders == "0" {
            return;
        }
        assert!(Instant::now() < deadline, "left on the server: {slots} slots, {senders} walsenders");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// Failures remove what the backup made

per_major!(fn failures_remove_what_the_backup_made(major) {
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new().tcp_auth(Auth::ScramSha256).user(User::new("alice").password("right").replication()),
    )
    .unwrap();
    let scratch = ScratchDir::new().unwrap();
    let data = scratch.path().join("pgdata");
    let alice = |password: &str| {
        format!("host=127.0.0.1 port={} user=alice password={password} sslmode=disable", cluster.port())
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cases: [(String, &[&str], &str); 4] = [
        (alice("wrong"), &[], "password authentication failed"),
        (conn(closed, ""), &[], "Connection refused"),
        (alice("right"), &["--max-rate", "31"], "max_rate 31 kB/s is outside"),
        (alice("right"), &["-X", "stream", "--compress", "gzip:99"], "gzip level"),
    ];
    for (dsn, extra, expected) in &cases {
        let out = pgplakar().args(["backup", "physical", "-d", dsn, "-D"]).arg(&data).args(*extra).output().unwrap();
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains(expected), "expected {expected:?}: {all}");
        assert!(!all.contains('\u{1b}'), "colour codes in a redirected stderr: {all:?}");
        assert!(!data.exists(), "{expected}: the directory the backup created is left: {:?}", entries(&data));
    }
    // An existing empty directory is emptied again, not removed.
    std::fs::create_dir(&data).unwrap();
    let out = pgplakar().args(["backup", "physical", "-d", &alice("wrong"), "-D"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    assert!(data.is_dir() && entries(&data).is_empty(), "{:?}", entries(&data));
    // --no-clean keeps it, with the reason.
    let out =
        pgplakar().args(["backup", "physical", "--no-clean", "-d", &alice("wrong"), "-D"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    let marker = std::fs::read_to_string(data.join("PGPLAKAR_BACKUP_INCOMPLETE")).unwrap();
    assert!(marker.contains("password authentication failed"), "{marker}");
    assert!(!marker.contains("wrong"), "no password in the marker: {marker}");
    std::fs::remove_dir_all(&data).unwrap();
    // The same with -Ft: removed by default, kept with the reason under --no-clean.
    let out = pgplakar().args(["backup", "physical", "-Ft", "-d", &alice("wrong"), "-D"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    assert!(!data.exists(), "-Ft: the directory the backup created is left: {:?}", entries(&data));
    let out = pgplakar()
        .args(["backup", "physical", "-Ft", "--no-clean", "-d", &alice("wrong"), "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let marker = std::fs::read_to_string(data.join("PGPLAKAR_BACKUP_INCOMPLETE")).unwrap();
    assert!(marker.contains("password authentication failed"), "-Ft: {marker}");
    assert!(!marker.contains("wrong"), "no password in the marker: {marker}");
    std::fs::remove_dir_all(&data).unwrap();
    // The retry works.
    let out = pgplakar().args(["backup", "physical", "-d", &alice("right"), "-D"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("PG_VERSION").is_file());
    assert_server_clean(&cluster);
});

// ---------------------------------------------------------------------------------------------
// SIGINT and SIGTERM

/// Waits until the backup has its walsender(s) streaming (one for fetch, two for stream).
fn wait_for_walsenders(cluster: &TestCluster, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count: usize = cluster
            .sql("select count(*) from pg_stat_replication where state in ('backup', 'catchup', 'streaming')")
            .unwrap()
            .parse()
            .unwrap();
        if count >= n {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pgplakar ended early: {status}");
        }
        assert!(Instant::now() < deadline, "the backup did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

per_major!(fn signals_stop_a_backup_cleanly(major) {
    let cluster = TestCluster::start(major).unwrap();
    for (signal, name) in [("-INT", "SIGINT"), ("-TERM", "SIGTERM")] {
        for (method, senders) in [("fetch", 1), ("stream", 2)] {
            for no_clean in [false, true] {
                let scratch = ScratchDir::new().unwrap();
                let data = scratch.path().join("pgdata");
                let tmp = scratch.path().join("tmp");
                std::fs::create_dir(&tmp).unwrap();
                let mut cmd = pgplakar();
                // ~25 MB at 256 kB/s: the backup is surely running when the signal comes.
                cmd.args(["backup", "physical", "-d", &conn(cluster.port(), ""), "-X", method, "--max-rate", "256", "-D"])
                    .arg(&data)
                    .env("TMPDIR", &tmp)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                if no_clean {
                    cmd.arg("--no-clean");
                }
                let mut child = cmd.spawn().unwrap();
                wait_for_walsenders(&cluster, senders, &mut child);
                if method == "stream" {
                    assert_eq!(entries(&tmp).len(), 1, "the WAL spool is in TMPDIR");
                }
                let sent = Instant::now();
                let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
                assert!(status.success());
                let out = loop {
                    if child.try_wait().unwrap().is_some() {
                        break child.wait_with_output().unwrap();
                    }
                    assert!(sent.elapsed() < Duration::from_secs(5), "{name}: pgplakar still runs");
                    std::thread::sleep(Duration::from_millis(20));
                };
                let took = sent.elapsed();
                let all = text(&out);
                let what = format!("{name} {method} no_clean={no_clean}");
                assert!(took < Duration::from_secs(1), "{what}: exit after {took:?}: {all}");
                assert!(!out.status.success(), "{what}: {all}");
                assert!(all.contains(&format!("interrupted by {name}")), "{what}: {all}");
                assert!(entries(&tmp).is_empty(), "{what}: WAL spool left: {:?}", entries(&tmp));
                if no_clean {
                    let marker = std::fs::read_to_string(data.join("PGPLAKAR_BACKUP_INCOMPLETE")).unwrap();
                    assert!(marker.contains("ABORTED") && marker.contains("cancelled"), "{what}: {marker}");
                    assert!(!data.join("PG_VERSION").exists());
                } else {
                    assert!(!data.exists(), "{what}: the backup's directory is left");
                }
                assert_server_clean(&cluster);
            }
        }
    }
});

// ---------------------------------------------------------------------------------------------
// Relative directories, mappings

per_major!(fn relative_directories_and_mappings(major) {
    let cluster = TestCluster::start(major).unwrap();
    cluster.create_tablespace("ts").unwrap();
    cluster.sql("create table in_ts tablespace ts as select g from generate_series(1, 1000) g").unwrap();
    let oid = cluster.sql("select oid from pg_tablespace where spcname = 'ts'").unwrap();
    let scratch = ScratchDir::new().unwrap();
    // Relative -D and -T, from the scratch directory.
    let out = pgplakar()
        .current_dir(scratch.path())
        .args(["backup", "physical", "-d", &conn(cluster.port(), ""), "-D", "pgdata", "-T", &format!("{oid}=ts-copy")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let link = std::fs::read_link(scratch.path().join("pgdata/pg_tblspc").join(&oid)).unwrap();
    assert!(link.is_absolute(), "{link:?}");
    pg_testkit::give_to_server_user(scratch.path()).unwrap();
    let copy = TestCluster::start_existing(major, scratch.path().join("pgdata"), ClusterOptions::new()).unwrap();
    assert_eq!(copy.sql("select count(*) from in_ts").unwrap(), "1000");
    drop(copy);

    // A mapping for an OID the cluster does not have: an error, nothing left.
    let out = pgplakar()
        .current_dir(scratch.path())
        .args(["backup", "physical", "-d", &conn(cluster.port(), ""), "-D", "second", "-T", "4242=elsewhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("names OID 4242, but the backup has no tablespace"), "{}", text(&out));
    assert!(!scratch.path().join("second").exists());

    // An empty mapping directory fails before connecting (the port is closed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = pgplakar()
        .current_dir(scratch.path())
        .args(["backup", "physical", "-d", &conn(closed, ""), "-D", "third", "-T", &format!("{oid}=")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("directory is empty") && !all.contains("refused"), "{all}");
    assert!(!scratch.path().join("third").exists());
    assert_server_clean(&cluster);
});

// ---------------------------------------------------------------------------------------------
// --help

#[test]
fn help_shows_no_password_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgplakar"))
        .args(["backup", "physical", "--help"])
        .env("PGPLAKAR_CONNECTION", "host=db user=u password=Sup3r-s3cret")
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("PGPLAKAR_CONNECTION"), "the variable is still documented: {all}");
    assert!(!all.contains("Sup3r-s3cret"), "--help printed the password: {all}");
}

// ---------------------------------------------------------------------------------------------
// What libpq says: an insecure password file, too many WAL senders

per_major!(fn insecure_passfile_and_too_many_wal_senders(major) {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new()
            .conf("max_wal_senders = 1")
            .tcp_auth(Auth::ScramSha256)
            .user(User::new("alice").password("right").replication()),
    )
    .unwrap();
    let scratch = ScratchDir::new().unwrap();
    // A password file others can read: libpq ignores it and says so (fe-connect.c).
    let passfile = scratch.path().join("pgpass");
    std::fs::write(&passfile, "*:*:*:alice:right\n").unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dsn = format!("host=127.0.0.1 port={} user=alice sslmode=disable", cluster.port());
    let out = pgplakar()
        .args(["backup", "physical", "-d", &dsn, "-D"])
        .arg(scratch.path().join("a"))
        .env("PGPASSFILE", &passfile)
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let warning = format!("password file \"{}\" has group or world access", passfile.display());
    assert!(all.contains(&warning) && all.contains("permissions should be u=rw (0600) or less"), "{all}");
    assert!(all.contains("no password was supplied"), "{all}");
    // At 0600 it is used.
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = pgplakar()
        .args(["backup", "physical", "-d", &dsn, "-D"])
        .arg(scratch.path().join("b"))
        .env("PGPASSFILE", &passfile)
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("group or world access"));

    // Stream mode needs a second WAL sender: 53300, reported as such, not as authentication.
    let out = pgplakar()
        .args(["backup", "physical", "-X", "stream", "-d", &dsn, "-D"])
        .arg(scratch.path().join("c"))
        .env("PGPASSFILE", &passfile)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("53300") && all.contains("max_wal_senders"), "{all}");
    assert!(all.contains("failed during startup"), "{all}");
    assert!(!all.contains("authentication"), "not an authentication failure: {all}");
    assert_server_clean(&cluster);
});
