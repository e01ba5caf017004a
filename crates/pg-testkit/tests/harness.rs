//! The harness's acceptance tests, against real servers of every selected major.
// Tests report timings and deliberate non-runs on stdout, which the test harness captures.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_testkit::{Auth, ClusterOptions, TestCluster, Tls, User, per_major};

const PASSWORD: &str = "s3cr3t 'pw\"";

/// Runs `psql -c query` with `conninfo`, the password in the environment (never on argv).
fn psql(conninfo: &str, password: Option<&str>, query: &str) -> Result<String, String> {
    let psql = pg_testkit::client_bin("psql").map_err(|e| e.to_string())?;
    let mut cmd = Command::new(psql);
    cmd.env_clear().args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", query]);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that nothing runs any more from `data_dir` and that `pid` is gone.
fn assert_nothing_left(pid: i32, data_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg_testkit::process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!pg_testkit::process_alive(pid), "postmaster {pid} still running");
    let left = pg_testkit::processes_using(data_dir);
    assert!(left.is_empty(), "processes still using {}: {left:?}", data_dir.display());
}

per_major!(fn scram_and_tls(major) {
    let options = ClusterOptions::new()
        .auth(Auth::ScramSha256)
        .tls(Tls::On)
        .user(User::new("alice").password(PASSWORD).replication());
    let mut cluster = TestCluster::start_with(major, options).unwrap();
    let pid = cluster.pid().unwrap() as i32;
    let data_dir = cluster.data_dir().to_path_buf();
    let children =
        cluster.sql("select count(*) from pg_stat_activity where backend_type = 'checkpointer'").unwrap();
    assert_eq!(children, "1");

    // SCRAM over plain TCP; stored verifier is SCRAM.
    let plain = format!("{} sslmode=disable", cluster.conninfo("alice"));
    let query = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()";
    let row = psql(&plain, Some(PASSWORD), query).unwrap();
    assert_eq!(row, "alice|f");
    let verifier =
        cluster.sql("select left(rolpassword, 14) from pg_authid where rolname = 'alice'").unwrap();
    assert_eq!(verifier, "SCRAM-SHA-256$");
    let wrong = psql(&plain, Some("wrong"), "select 1").unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    // TLS with full verification against the generated CA, by name.
    let ca = cluster.ca_cert_path().unwrap().display().to_string();
    let tls = format!(
        "host=localhost port={} user=alice dbname=postgres sslmode=verify-full sslrootcert={ca}",
        cluster.port()
    );
    let row = psql(&tls, Some(PASSWORD), "select ssl from pg_stat_ssl where pid = pg_backend_pid()").unwrap();
    assert_eq!(row, "t");

    let ts_dir = cluster.create_tablespace("ts_one").unwrap();
    cluster.sql("create table t (i int) tablespace ts_one; insert into t values (1), (2)").unwrap();
    assert_eq!(cluster.sql("select count(*) from t").unwrap(), "2");
    let version_dirs = std::fs::read_dir(&ts_dir).unwrap().count();
    assert_eq!(version_dirs, 1, "tablespace dir {} has its PG_<major>_<catversion> dir", ts_dir.display());
    let num = cluster.sql("show server_version_num").unwrap();
    assert_eq!(num.parse::<u32>().unwrap() / 10000, major);

    cluster.stop().unwrap();
    assert_nothing_left(pid, &data_dir);
    let cluster_dir = cluster.cluster_dir().to_path_buf();
    drop(cluster);
    assert!(!cluster_dir.exists(), "{} removed on drop", cluster_dir.display());
    assert!(pg_testkit::processes_using(&cluster_dir).is_empty());
});

per_major!(fn start_stop_timing(major) {
    // Warm the template first: its one-time initdb is not what this measures.
    drop(TestCluster::start(major).unwrap());
    let started = Instant::now();
    let cluster = TestCluster::start(major).unwrap();
    let up = started.elapsed();
    let pid = cluster.pid().unwrap() as i32;
    let data_dir = cluster.data_dir().to_path_buf();
    drop(cluster);
    let total = started.elapsed();
    println!("PostgreSQL {major}: start {up:?}, start+stop+cleanup {total:?}");
    assert_nothing_left(pid, &data_dir);
    assert!(total < Duration::from_secs(5), "start+stop took {total:?}");
});

per_major!(async fn usable_from_async_tests(major) {
    let cluster = TestCluster::start(major).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(cluster.sql("select 40 + 2").unwrap(), "42");
});

#[test]
fn killed_test_process_leaves_nothing_after_next_start() {
    let Some(&major) = pg_testkit::selected_majors().last() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-testkit-hold"))
        .arg(major.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let (pid, data_dir) = line.trim().split_once(' ').expect("`<pid> <data dir>` from the helper");
    let pid: i32 = pid.parse().unwrap();
    let data_dir = Path::new(data_dir).to_path_buf();
    assert!(pg_testkit::process_alive(pid), "the orphan's postmaster runs");
    child.kill().unwrap(); // SIGKILL: no destructor runs.
    child.wait().unwrap();
    assert!(pg_testkit::process_alive(pid), "the postmaster outlives its killed owner");

    // Every cluster start reaps the clusters of dead owners.
    let cluster = TestCluster::start(major).unwrap();
    assert_nothing_left(pid, &data_dir);
    assert!(!data_dir.exists(), "{} removed", data_dir.display());
    assert!(!data_dir.parent().unwrap().exists(), "cluster dir removed");
    assert_eq!(cluster.sql("select 1").unwrap(), "1");
}

#[test]
fn cert_auth_and_tls_only_server() {
    let Some(&major) = pg_testkit::selected_majors().last() else { return };
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new().tcp_auth(Auth::Cert).tls(Tls::Only).user(User::new("bob")),
    )
    .unwrap();
    let ca = cluster.ca_cert_path().unwrap().display().to_string();
    let (cert, key) = cluster.client_cert_paths("bob").unwrap();
    let with_cert = format!(
        "host=localhost port={} user=bob dbname=postgres sslmode=verify-full sslrootcert={ca} \
         sslcert={} sslkey={}",
        cluster.port(),
        cert.display(),
        key.display()
    );
    assert_eq!(psql(&with_cert, None, "select current_user").unwrap(), "bob");
    let no_tls = format!("{} sslmode=disable", cluster.conninfo("bob"));
    let err = psql(&no_tls, None, "select 1").unwrap_err();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
}

#[test]
fn md5_users_and_non_tls_server() {
    let Some(&major) = pg_testkit::selected_majors().first() else { return };
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new().auth(Auth::Md5).user(User::new("carol").password(PASSWORD).superuser()),
    )
    .unwrap();
    let verifier =
        cluster.sql("select left(rolpassword, 3), rolsuper from pg_authid where rolname = 'carol'").unwrap();
    assert_eq!(verifier, "md5|t");
    let plain = format!("{} sslmode=disable", cluster.conninfo("carol"));
    assert_eq!(psql(&plain, Some(PASSWORD), "select current_user").unwrap(), "carol");
    let err = psql(&format!("{} sslmode=require", cluster.conninfo("carol")), Some(PASSWORD), "select 1")
        .unwrap_err();
    assert!(err.contains("SSL"), "{err}");
}

#[test]
fn options_reach_the_server() {
    let Some(&major) = pg_testkit::selected_majors().first() else { return };
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new()
            .checksums(true)
            .wal_segsize_mb(32)
            .wal_keep_size_mb(64)
            .max_wal_size_mb(256)
            .conf("work_mem = '7MB'")
            .tablespace("ts_a"),
    )
    .unwrap();
    let show = |name: &str| cluster.sql(&format!("show {name}")).unwrap();
    assert_eq!(show("data_checksums"), "on");
    assert_eq!(show("wal_segment_size"), "32MB");
    assert_eq!(show("max_wal_size"), "256MB");
    assert_eq!(show("work_mem"), "7MB");
    assert_eq!(show("wal_level"), "replica");
    assert_eq!(show("fsync"), "off");
    if major >= 13 {
        assert_eq!(show("wal_keep_size"), "64MB");
    } else {
        assert_eq!(show("wal_keep_segments"), "2");
    }
    assert_eq!(cluster.sql("select count(*) from pg_tablespace where spcname = 'ts_a'").unwrap(), "1");
    let err = cluster.sql("select * from no_such_table").unwrap_err().to_string();
    assert!(err.contains("no_such_table") && err.contains("does not exist"), "{err}");
}

#[test]
fn checksums_off_explicitly_on_18() {
    if !pg_testkit::selected_majors().contains(&18) {
        println!("PostgreSQL 18 not selected by PG_VERSIONS: test not run");
        return;
    }
    let cluster = TestCluster::start(18).unwrap();
    assert_eq!(cluster.sql("show data_checksums").unwrap(), "off");
}

#[test]
fn start_existing_on_a_copied_data_directory() {
    let Some(&major) = pg_testkit::selected_majors().last() else { return };
    let mut source = TestCluster::start(major).unwrap();
    source.sql("create table kept (v text); insert into kept values ('hello')").unwrap();
    source.stop().unwrap();
    let scratch = pg_testkit::ScratchDir::new().unwrap();
    let copy = scratch.path().join("restored");
    // Copy as the test user (root in CI): start_existing must fix ownership and mode.
    let status = Command::new("cp").args(["-r"]).arg(source.data_dir()).arg(&copy).status().unwrap();
    assert!(status.success());
    let restored = TestCluster::start_existing(major, &copy, ClusterOptions::new()).unwrap();
    assert_ne!(restored.port(), 0);
    assert_eq!(restored.sql("select v from kept").unwrap(), "hello");
    let pid = restored.pid().unwrap() as i32;
    drop(restored);
    assert_nothing_left(pid, &copy);
    assert!(!copy.exists(), "restored data dir removed on drop");
}

#[test]
fn four_clusters_at_once() {
    let majors = pg_testkit::selected_majors();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let major = majors[i % majors.len()];
            std::thread::spawn(move || {
                let cluster = TestCluster::start(major).unwrap();
                cluster.sql("select 1").unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "1");
    }
}

#[test]
fn missing_binaries_fail_with_the_setup_command() {
    let err = pg_testkit::server_bin_dir(12, pg_testkit::ServerSource::Full).unwrap_err().to_string();
    assert!(err.starts_with("PostgreSQL 12 server binaries not found in "), "{err}");
    assert!(err.ends_with(": run scripts/setup-postgres"), "{err}");
}

#[test]
fn passwords_stay_out_of_errors_and_logs() {
    let Some(&major) = pg_testkit::selected_majors().first() else { return };
    let secret = "never-show-this-7f3a";
    // The second CREATE ROLE fails: neither the error nor the server log may show the password.
    let options = ClusterOptions::new()
        .auth(Auth::ScramSha256)
        .user(User::new("dup").password(secret))
        .user(User::new("dup").password(secret));
    let err = TestCluster::start_with(major, options.clone()).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("already exists"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{options:?}").contains(secret));

    let cluster =
        TestCluster::start_with(major, ClusterOptions::new().user(User::new("ok").password(secret))).unwrap();
    cluster.sql("select pg_reload_conf()").unwrap();
    assert!(!cluster.log_contents().contains(secret));
    assert!(!format!("{cluster:?}").contains(secret));
}
