//! `postgresqlBinImporter` through the test host, against real servers: the acceptance test of
//! the physical plugin (pgbench data, a tablespace, a large object, an unlogged table; the
//! snapshot's `/data` written out starts with that major's `postgres` and passes
//! `pg_verifybackup`), the host's scenarios (concurrency, out-of-order acks, acks without
//! `Open`, cancelled `Open`s, `Close` during Import, stdin EOF, SIGKILL, the cache), failure
//! visibility, stdout purity at the most verbose logging, and no password anywhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::import::{self, Settings};
use e2e::store::BlobStore;
use e2e::transport::{Plugin, SpawnOptions};
use e2e::{export, mode};
use pg_testkit::{Auth, ClusterOptions, ScratchDir, TestCluster, User, per_major};

const PASSWORD: &str = "pW-3e2e-Sekr1t";
const USER: &str = "backup_user";

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn client(name: &str) -> Command {
    Command::new(pg_testkit::client_bin(name).unwrap())
}

/// A cluster with a password-protected backup role (SCRAM over TCP), pgbench data, a second
/// tablespace, a large object and an unlogged table.
fn source(major: u32, scale: u32) -> TestCluster {
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new()
            .tcp_auth(Auth::ScramSha256)
            .user(User::new(USER).password(PASSWORD).superuser().replication())
            .checksums(true),
    )
    .unwrap();
    run(client("pgbench")
        .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string(), "-U", "postgres", "postgres"]));
    cluster.create_tablespace("ts1").unwrap();
    cluster
        .sql(
            "create table in_ts tablespace ts1 as select g, md5(g::text) from generate_series(1, 20000) g;
             create unlogged table scratch as select g from generate_series(1, 1000) g;
             select lo_from_bytea(4242, 'a large object');",
        )
        .unwrap();
    cluster
}

fn location(cluster: &TestCluster) -> String {
    format!("postgres+bin://{USER}:{PASSWORD}@127.0.0.1:{}", cluster.port())
}

fn config(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn bin_importer() -> std::path::PathBuf {
    e2e::plugin_binary("postgresqlBinImporter")
}

async fn spawn(verbose: bool) -> Plugin {
    let mut options = SpawnOptions::default();
    if verbose {
        options.env.push(("RUST_LOG".into(), "trace".into()));
    }
    Plugin::spawn(&bin_importer(), &options).await.unwrap()
}

/// Ends the plugin as Plakar does after a backup: Close, then the pipes close; it must exit 0
/// promptly, and must have written nothing but HTTP/2 to stdout.
async fn close_and_exit(plugin: Plugin) -> String {
    import::client(plugin.channel()).close(e2e::proto::importer::CloseRequest {}).await.expect("Close");
    assert_eq!(plugin.stdout_violation(), None);
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "exit status {status:?}\n{stderr}");
    stderr
}

fn pgbench_sums(cluster: &TestCluster) -> Vec<String> {
    [
        "select sum(abalance) from pgbench_accounts",
        "select sum(bbalance) from pgbench_branches",
        "select sum(tbalance) from pgbench_tellers",
        "select count(*) from pgbench_accounts",
    ]
    .iter()
    .map(|q| cluster.sql(q).unwrap())
    .collect()
}

fn verifybackup(major: u32, data: &Path) {
    if major < 13 {
        return; // no backup_manifest before 13
    }
    let (tool_major, args): (u32, &[&str]) = if major == 13 { (14, &["-n"]) } else { (major, &[]) };
    let bin = pg_testkit::client_bin_for_major("pg_verifybackup", tool_major).unwrap();
    run(Command::new(bin).args(args).arg(data));
}

/// Walsenders and slots of the cluster, waited for to go (a cancelled backup's connection).
async fn no_replication_left(cluster: &TestCluster) {
    let mut left = String::new();
    for _ in 0..100 {
        left = cluster
            .sql("select (select count(*) from pg_replication_slots) + (select count(*) from pg_stat_replication)")
            .unwrap();
        if left == "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{left} slots or walsenders left behind");
}

per_major!(async fn physical_backup_through_the_plugin_restores_and_verifies(major) {
    let cluster = source(major, 2);
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(&store_dir.path().join("store"), true).unwrap();
    let plugin = spawn(true).await;
    let init = import::init(plugin.channel(), "postgres+bin", config(&[("location", location(&cluster))]), 8)
        .await
        .expect("Init");
    assert_eq!(init.r#type, "postgres+bin");
    assert_eq!(init.root, "/");
    assert_eq!(init.origin, format!("127.0.0.1:{}", cluster.port()));
    assert_eq!(init.flags & 4, 4, "FLAG_STREAM");

    let mut settings = Settings::new(8, store.clone());
    settings.shuffle = true;
    let outcome = import::run(plugin.channel(), &init, settings).await;
    assert_eq!(outcome.result, Ok(()), "stderr:\n{}", plugin.stderr());
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.finished, 1);
    assert_eq!(outcome.order[0], "/manifest.json");
    assert!(outcome.snapshot.errors.is_empty(), "{:?}", outcome.snapshot.errors);
    assert!(outcome.max_open_in_flight > 1, "several Opens in flight: {}", outcome.max_open_in_flight);
    let snap = &outcome.snapshot;
    let data = &snap.entries["/data"];
    assert!(mode::is_dir(data.info.mode) && !data.synthetic, "/data is a real directory entry");
    assert!(snap.entries.keys().any(|p| p.starts_with("/tablespaces/")), "the tablespace is in the snapshot");
    for (path, e) in &snap.entries {
        assert_eq!(e.info.name, e2e::store::base(path), "{path}");
    }
    let manifest = export::content(&store, &snap.entries["/manifest.json"]);
    let json: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(json["version"], 2);

    let stderr = close_and_exit(plugin).await;
    assert!(stderr.contains("TRACE") || stderr.contains("DEBUG"), "verbose logging was on:\n{}", &stderr[..stderr.len().min(2000)]);

    // No password anywhere: stderr at trace level, the records, /manifest.json, the store.
    assert!(!stderr.contains(PASSWORD), "the password reached stderr");
    assert!(!String::from_utf8_lossy(&manifest).contains(PASSWORD));
    for path in snap.entries.keys() {
        assert!(!path.contains(PASSWORD));
    }
    let grep = Command::new("grep").args(["-r", "-l", "-a", PASSWORD]).arg(store_dir.path()).output().unwrap();
    assert!(grep.stdout.is_empty(), "the password is in the store: {}", String::from_utf8_lossy(&grep.stdout));

    // /data written out as Plakar's fs exporter does starts with this major's postgres.
    let restore = ScratchDir::new().unwrap();
    export::write_out(snap, &store, "/", restore.path()).unwrap();
    let data_dir = restore.path().join("data");
    let link_dir = data_dir.join("pg_tblspc");
    let link = std::fs::read_dir(&link_dir).unwrap().next().expect("a tablespace link").unwrap().path();
    let target = std::fs::read_link(&link).unwrap();
    assert!(target.is_relative() && target.starts_with("../../tablespaces"), "{target:?}");
    pg_testkit::give_to_server_user(restore.path()).unwrap();
    verifybackup(major, &data_dir);
    let copy = TestCluster::start_existing(major, &data_dir, ClusterOptions::new()).unwrap();
    assert_eq!(pgbench_sums(&copy), pgbench_sums(&cluster));
    assert_eq!(copy.sql("select count(*) from in_ts").unwrap(), "20000");
    assert_eq!(copy.sql("select convert_from(lo_get(4242), 'UTF8')").unwrap(), "a large object");
    assert_eq!(copy.sql("select count(*) from scratch").unwrap(), "0", "unlogged tables come back empty");
    assert_eq!(copy.sql("select pg_is_in_recovery()").unwrap(), "f");
});

per_major!(async fn host_scenarios_one_worker_skips_cancelled_opens_and_the_cache(major) {
    let cluster = source(major, 1);
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), true).unwrap();
    let cfg = config(&[("location", location(&cluster))]);

    // N = 1, every third file acknowledged without Open, every fifth Open cancelled after its
    // first chunk: the backup still succeeds, the plugin survives.
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 1).await.unwrap();
    let mut settings = Settings::new(1, store.clone());
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (n1, n2) = (Arc::clone(&n), Arc::clone(&n));
    settings.skip = Arc::new(move |p| p.starts_with("/data/base/") && n1.fetch_add(1, Ordering::SeqCst) % 3 == 0);
    settings.cancel_open = Arc::new(move |p| p.starts_with("/data/base/") && n2.load(Ordering::SeqCst) % 5 == 1);
    let picky = import::run(plugin.channel(), &init, settings).await;
    assert_eq!(picky.result, Ok(()), "{}", plugin.stderr());
    assert!(picky.violations.is_empty(), "{:?}", picky.violations);
    assert!(picky.not_opened > 100 && picky.cancelled > 5, "{} not opened, {} cancelled", picky.not_opened, picky.cancelled);
    assert_eq!(picky.max_open_in_flight, 1);
    close_and_exit(plugin).await;

    // A full run with 8 workers and shuffled acks, then a second run with the first as the
    // parent snapshot: /manifest.json is always read again (fresh mtime); old relation files
    // may come from the cache; files marked unstable never do. The relation files are made an
    // hour old first, else every file of a cluster this young is "possibly changed after it was
    // read" and none may come from the cache.
    run(Command::new("find")
        .arg(cluster.data_dir().join("base"))
        .args(["-type", "f", "-exec", "touch", "-m", "-d", "1 hour ago", "{}", "+"]));
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 8).await.unwrap();
    let mut settings = Settings::new(8, store.clone());
    settings.shuffle = true;
    let first = import::run(plugin.channel(), &init, settings).await;
    assert_eq!(first.result, Ok(()), "{}", plugin.stderr());
    close_and_exit(plugin).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let plugin = spawn(false).await;
    let init2 = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 8).await.unwrap();
    assert_eq!((init2.r#type.as_str(), init2.origin.as_str(), init2.root.as_str()), (init.r#type.as_str(), init.origin.as_str(), init.root.as_str()), "stable across runs");
    let mut settings = Settings::new(8, store.clone());
    settings.cache = Some(Arc::new(first.snapshot.clone()));
    let second = import::run(plugin.channel(), &init2, settings).await;
    assert_eq!(second.result, Ok(()), "{}", plugin.stderr());
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    close_and_exit(plugin).await;
    assert!(second.cache_hits > 50, "unchanged relation files are cache hits: {}", second.cache_hits);
    let m1 = &first.snapshot.entries["/manifest.json"].info;
    let m2 = &second.snapshot.entries["/manifest.json"].info;
    assert!(!m2.cache_equal(m1), "/manifest.json must never match the previous run");
    for (path, e) in &second.snapshot.entries {
        if e.info.dev != 0 || e.info.ino != 0 {
            let prev = first.snapshot.entries.get(path);
            assert!(prev.is_none_or(|p| !e.info.cache_equal(&p.info)), "{path}: unstable file matched the cache");
        }
    }
    for f in ["/data/backup_label", "/data/backup_manifest"].iter().filter(|f| major >= 13 || **f != "/data/backup_manifest") {
        let (a, b) = (&first.snapshot.entries[*f].info, &second.snapshot.entries[*f].info);
        assert!(!b.cache_equal(a), "{f} must be read again");
    }
});

per_major!(async fn acks_without_open_close_during_import_and_the_end_of_the_plugin(major) {
    let cluster = source(major, 1);
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), false).unwrap();
    let cfg = config(&[("location", location(&cluster))]);

    // Every record acknowledged without Open (a dry run): the backup completes.
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 4).await.unwrap();
    let mut settings = Settings::new(4, store.clone());
    settings.skip = Arc::new(|_| true);
    let dry = import::run(plugin.channel(), &init, settings).await;
    assert_eq!(dry.result, Ok(()), "{}", plugin.stderr());
    assert_eq!(dry.opens, 0);
    close_and_exit(plugin).await;
    no_replication_left(&cluster).await;

    // Close while Import is still running (the stats instance): no deadlock, the backup is
    // cancelled, the plugin exits on EOF.
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 4).await.unwrap();
    let channel = plugin.channel();
    let slow = Settings { shuffle: true, ..Settings::new(1, store.clone()) };
    let running = tokio::spawn(async move { import::run(channel, &init, slow).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), import::client(plugin.channel()).close(e2e::proto::importer::CloseRequest {}))
        .await
        .expect("Close returned")
        .expect("Close OK");
    let outcome = tokio::time::timeout(Duration::from_secs(30), running).await.expect("Import ended").unwrap();
    if outcome.result.is_ok() {
        // It may have finished before Close arrived; then it was complete.
        assert_eq!(outcome.finished, 1);
    } else {
        assert_eq!(outcome.finished, 0, "an error, never after finished");
    }
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    no_replication_left(&cluster).await;

    // stdin EOF in the middle of Import: the plugin exits 0, the server's walsender goes.
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 1).await.unwrap();
    let channel = plugin.channel();
    let stalled = Settings { skip: Arc::new(|p| p != "/data/backup_label"), ..Settings::new(1, store.clone()) };
    let _running = tokio::spawn(async move { import::run(channel, &init, stalled).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    no_replication_left(&cluster).await;

    // SIGKILL in the middle of Import: the server notices the connection is gone.
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", cfg.clone(), 1).await.unwrap();
    let channel = plugin.channel();
    let _running = tokio::spawn(async move { import::run(channel, &init, Settings::new(1, BlobStore::new(Path::new("/tmp/e2e-discard"), false).unwrap())).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    plugin.kill().await;
    no_replication_left(&cluster).await;
});

per_major!(async fn failures_are_visible_to_the_host(major) {
    let mut cluster = source(major, 1);
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), false).unwrap();

    // A bad option: Init fails naming it and the valid ones.
    let plugin = spawn(false).await;
    let err = import::init(
        plugin.channel(),
        "postgres+bin",
        config(&[("location", location(&cluster)), ("compression", "zstd".into())]),
        4,
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("\"compression\"") && err.message().contains("valid options:"), "{}", err.message());
    let (status, _) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());

    // A wrong password and an unreachable server: Import fails before `finished`, saying why,
    // and the password is not in the message.
    let wrong = format!("postgres+bin://{USER}:not-the-password@127.0.0.1:{}", cluster.port());
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("postgres+bin://{USER}:{PASSWORD}@127.0.0.1:{closed_port}");
    for (loc, expect) in [(wrong, "password authentication failed"), (unreachable, "127.0.0.1")] {
        let plugin = spawn(false).await;
        let init = import::init(plugin.channel(), "postgres+bin", config(&[("location", loc)]), 4).await.unwrap();
        let outcome = import::run(plugin.channel(), &init, Settings::new(4, store.clone())).await;
        let msg = outcome.result.clone().unwrap_err();
        assert!(msg.starts_with("import failed: ") && msg.contains(expect), "{msg}");
        assert!(!msg.contains(PASSWORD) && !msg.contains("not-the-password"), "{msg}");
        assert_eq!(outcome.finished, 0);
        let stderr = close_and_exit(plugin).await;
        assert!(!stderr.contains(PASSWORD) && !stderr.contains("not-the-password"));
    }

    // The server stops in the middle of the base backup: Import fails before `finished`.
    let pid = cluster.pid().expect("postmaster pid") as i32;
    let plugin = spawn(false).await;
    let init = import::init(plugin.channel(), "postgres+bin", config(&[("location", location(&cluster))]), 2).await.unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stopped);
    let mut settings = Settings::new(2, store.clone());
    settings.skip = Arc::new(move |p| {
        if p.starts_with("/data/base/") && !s2.swap(true, Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    });
    let outcome = import::run(plugin.channel(), &init, settings).await;
    assert!(stopped.load(Ordering::SeqCst));
    let msg = outcome.result.clone().unwrap_err();
    assert!(msg.starts_with("import failed: "), "{msg}");
    assert_eq!(outcome.finished, 0, "{msg}");
    close_and_exit(plugin).await;
    cluster.stop_immediate();
});
