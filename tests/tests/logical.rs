//! `postgresqlImporter` then `postgresqlExporter` through the test host, against real servers:
//! one database with its globals into a fresh cluster, the whole cluster through `all.sql`, a
//! failing restore that fails `Export`, and a bad option that fails `Init`; a `pg_dump` killed
//! in the middle of its stream fails `Import` and leaves no process; no password on any
//! child's command line or in its environment, in the plugins' stderr, in the stored records or
//! in error messages; a snapshot in the Go plugin's layout restores.

#![allow(clippy::print_stderr)] // notes about what a major cannot do, in the test output

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::import::{self, Settings};
use e2e::store::{BlobStore, Entry, Info, Snapshot};
use e2e::transport::{Plugin, SpawnOptions};
use e2e::{export, procs};
use pg_testkit::{Auth, ClusterOptions, ScratchDir, TestCluster, User, per_major};

const PASSWORD: &str = "lOg1cal-e2e-pw";
const USER: &str = "backup_user";

fn cluster(major: u32) -> TestCluster {
    TestCluster::start_with(
        major,
        ClusterOptions::new()
            .tcp_auth(Auth::ScramSha256)
            .user(User::new(USER).password(PASSWORD).superuser()),
    )
    .unwrap()
}

fn url(cluster: &TestCluster, db: &str) -> String {
    format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", cluster.port())
}

fn config(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// The client tools of the server's major (14 for 12 and 13, which have no tool set here: a
/// newer pg_dump writes `LOCALE_PROVIDER` into `CREATE DATABASE`, which 12 and 13 reject).
fn pg_bin_dir(major: u32) -> String {
    let bin = pg_testkit::client_bin_for_major("pg_dump", major.max(14)).unwrap();
    bin.parent().unwrap().to_string_lossy().into_owned()
}

async fn backup(location: String, major: u32, store: &BlobStore) -> e2e::import::Outcome {
    let plugin =
        Plugin::spawn(&e2e::plugin_binary("postgresqlImporter"), &SpawnOptions::default()).await.unwrap();
    let init = import::init(
        plugin.channel(),
        "postgres",
        config(&[("location", location), ("pg_bin_dir", pg_bin_dir(major))]),
        4,
    )
    .await
    .expect("Init");
    assert_eq!((init.r#type.as_str(), init.root.as_str()), ("postgresql", "/"));
    assert_eq!(init.flags & 4, 4, "FLAG_STREAM");
    let mut settings = Settings::new(4, store.clone());
    settings.shuffle = true;
    let outcome = import::run(plugin.channel(), &init, settings).await;
    import::client(plugin.channel()).close(e2e::proto::importer::CloseRequest {}).await.unwrap();
    assert_eq!(plugin.stdout_violation(), None);
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    outcome
}

async fn restore(
    target: &TestCluster,
    extra: &[(&str, String)],
    snapshot: &e2e::store::Snapshot,
    store: &BlobStore,
    path: &str,
) -> export::ExportOutcome {
    let plugin =
        Plugin::spawn(&e2e::plugin_binary("postgresqlExporter"), &SpawnOptions::default()).await.unwrap();
    let mut cfg = config(extra);
    cfg.insert("location".into(), url(target, ""));
    cfg.insert("pg_bin_dir".into(), pg_bin_dir(target.major()));
    export::init(plugin.channel(), "postgres", cfg).await.expect("exporter Init");
    let outcome =
        export::run(plugin.channel(), snapshot, store, path, export::ExportSettings::default()).await;
    export::client(plugin.channel()).close(e2e::proto::exporter::CloseRequest {}).await.unwrap();
    assert_eq!(plugin.stdout_violation(), None);
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    outcome
}

per_major!(async fn logical_round_trips_through_the_plugins(major) {
    let source = cluster(major);
    source
        .sql(
            "create role shop_owner; create database shop owner shop_owner;",
        )
        .unwrap();
    source
        .sql_db("shop", "create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 5000) g; alter table items owner to shop_owner;")
        .unwrap();
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), true).unwrap();

    // One database with its globals.
    let one = backup(url(&source, "shop"), major, &store).await;
    assert_eq!(one.result, Ok(()));
    assert_eq!(one.order[0], "/manifest.json");
    let files: Vec<&str> = one.snapshot.entries.keys().map(String::as_str).collect();
    assert!(files.contains(&"/globals.sql") && files.contains(&"/shop.dump"), "{files:?}");
    for p in ["/globals.sql", "/shop.dump"] {
        let fi = &one.snapshot.entries[p].info;
        assert!(fi.size > 0 && fi.mtime_secs > 1_700_000_000, "{p}: {fi:?}");
    }
    // The target database exists (create_db would make pg_restore send CREATE DATABASE as a
    // newer pg_dump wrote it, with LOCALE, which 12 rejects); the globals create its owner.
    let target = cluster(major);
    target.sql("create database shop").unwrap();
    let restored = restore(&target, &[("restore_globals", "true".into())], &one.snapshot, &store, "/").await;
    assert_eq!(restored.result, Ok(()), "{:?}", restored.results);
    assert!(restored.results.iter().all(|(_, e)| e.is_empty()), "{:?}", restored.results);
    assert_eq!(target.sql_db("shop", "select count(*) from items").unwrap(), "5000");
    assert_eq!(target.sql_db("shop", "select tableowner from pg_tables where tablename = 'items'").unwrap(), "shop_owner");
    assert_eq!(target.sql("select count(*) from pg_roles where rolname = 'shop_owner'").unwrap(), "1");

    // The whole cluster through all.sql.
    let all = backup(url(&source, ""), major, &store).await;
    assert_eq!(all.result, Ok(()));
    assert!(all.snapshot.entries.contains_key("/all.sql"), "{:?}", all.snapshot.entries.keys().collect::<Vec<_>>());
    let target2 = cluster(major);
    let restored = restore(&target2, &[], &all.snapshot, &store, "/").await;
    if major == 12 {
        // No client tools of 12 or 13 exist here: pg_dumpall 14 writes `CREATE DATABASE …
        // LOCALE = …`, which a 12 server rejects. The failure must then be visible.
        eprintln!("PostgreSQL 12: all.sql from pg_dumpall 14 cannot be replayed into 12 (LOCALE); checking the failure is visible");
        let err = restored.result.clone().unwrap_err();
        assert!(err.contains("/all.sql") && err.contains("locale"), "{err}");
    } else {
        assert_eq!(restored.result, Ok(()), "{:?}", restored.results);
        assert_eq!(target2.sql_db("shop", "select count(*) from items").unwrap(), "5000");
    }

    // Restoring the same dump again into a target that has its tables: pg_restore fails, and
    // so does Export (a failed restore is never exit 0).
    let again = restore(&target, &[], &one.snapshot, &store, "/shop.dump").await;
    let err = again.result.clone().unwrap_err();
    assert!(err.contains("/shop.dump"), "{err}");

    // A truncated file (a read error on the host's side): Export fails.
    let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlExporter"), &SpawnOptions::default()).await.unwrap();
    let target3 = cluster(major);
    export::init(plugin.channel(), "postgres", config(&[("location", url(&target3, "")), ("pg_bin_dir", pg_bin_dir(major))])).await.unwrap();
    let cut = export::run(plugin.channel(), &one.snapshot, &store, "/shop.dump", export::ExportSettings { truncate_file: Some(0), ..Default::default() }).await;
    assert!(cut.result.is_err(), "{cut:?}");
    let (status, _) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());
    assert_eq!(target3.sql("select count(*) from pg_database where datname = 'shop'").unwrap(), "0");

    // A bad option fails Init, naming it.
    let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlImporter"), &SpawnOptions::default()).await.unwrap();
    let err = import::init(plugin.channel(), "postgres", config(&[("location", url(&source, "shop")), ("compres", "true".into())]), 4)
        .await
        .unwrap_err();
    assert!(err.message().contains("compres"), "{}", err.message());
    let _ = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
});

/// Rows of ~200 bytes: a dump of ~12 MB, far more than the plugin's chunk, pipe and HTTP/2
/// windows hold, so `pg_dump` is still running (blocked on its pipe) while the host holds the
/// first chunk of its record.
const BIG_ROWS: u32 = 60_000;

fn fill_big(cluster: &TestCluster, db: &str) {
    cluster
        .sql_db(
            db,
            &format!(
                "create table big as select g as id, repeat(md5(g::text), 6) as pad from generate_series(1, {BIG_ROWS}) g"
            ),
        )
        .unwrap();
}

/// Waits until the server has no session of `application_name` left.
async fn no_session_of(cluster: &TestCluster, application_name: &str) {
    let q = format!("select count(*) from pg_stat_activity where application_name = '{application_name}'");
    let mut left = String::new();
    for _ in 0..100 {
        left = cluster.sql(&q).unwrap();
        if left == "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{left} {application_name} session(s) left on the server");
}

per_major!(async fn a_pg_dump_killed_mid_stream_fails_import_and_leaves_no_process(major) {
    let source = cluster(major);
    source.sql("create database shop").unwrap();
    fill_big(&source, "shop");
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), true).unwrap();
    let mut plugin =
        Plugin::spawn(&e2e::plugin_binary("postgresqlImporter"), &SpawnOptions::default()).await.unwrap();
    let plugin_pid = plugin.pid;
    let init = import::init(
        plugin.channel(),
        "postgres",
        config(&[("location", url(&source, "shop")), ("pg_bin_dir", pg_bin_dir(major))]),
        4,
    )
    .await
    .expect("Init");

    // When the host holds the first chunk of /shop.dump, the real pg_dump child is SIGKILLed.
    let seen: Arc<Mutex<Option<Vec<procs::Proc>>>> = Arc::default();
    let mut settings = Settings::new(4, store.clone());
    let s2 = Arc::clone(&seen);
    settings.on_chunk = Some(Arc::new(move |path, _| {
        let mut seen = s2.lock().unwrap();
        if path != "/shop.dump" || seen.is_some() {
            return;
        }
        let dumps: Vec<procs::Proc> = procs::children(plugin_pid)
            .into_iter()
            .filter(|p| p.comm == "pg_dump" && p.state != 'Z')
            .collect();
        if let [one] = dumps.as_slice() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(one.pid as i32), nix::sys::signal::Signal::SIGKILL)
                .unwrap();
        }
        *seen = Some(dumps);
    }));
    let outcome = tokio::time::timeout(Duration::from_secs(60), import::run(plugin.channel(), &init, settings))
        .await
        .expect("Import ended");
    let dumps = seen.lock().unwrap().take().expect("the host received a chunk of /shop.dump");
    assert_eq!(dumps.len(), 1, "one running pg_dump child while the host holds the first chunk: {dumps:?}");

    // Import fails before `finished`, saying which file, which tool and how it ended.
    let msg = outcome.result.clone().unwrap_err();
    assert_eq!(outcome.finished, 0, "{msg}");
    assert!(msg.starts_with("import failed: "), "{msg}");
    for part in ["/shop.dump", "pg_dump", "killed by signal 9"] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    // The cut dump never passes for a good file: its Open ended with an error.
    assert!(outcome.snapshot.errors.contains_key("/shop.dump"), "{:?}", outcome.snapshot.errors);
    assert!(outcome.snapshot.entries.get("/shop.dump").is_none_or(|e| e.content.is_none()));

    // Nothing left behind: no child (not even a zombie) of the plugin, no pg_dump session.
    let left = procs::descendants(plugin_pid);
    assert!(left.is_empty(), "processes left behind by the plugin: {left:?}");
    assert!(plugin.is_running(), "the plugin survives a failed backup");
    no_session_of(&source, "pg_dump").await;

    import::client(plugin.channel()).close(e2e::proto::importer::CloseRequest {}).await.expect("Close");
    assert_eq!(plugin.stdout_violation(), None);
    let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!stderr.contains(PASSWORD));
});

/// Names of the processes among `procs` that had exec'd (a fork not yet exec'd shows the
/// plugin's own name).
fn comms(procs: &[procs::Proc]) -> BTreeSet<String> {
    procs.iter().filter(|p| p.state != 'Z').map(|p| p.comm.clone()).collect()
}

/// Which processes ran, by record path, when a hook fired for that path the first time.
type RunningAt = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

per_major!(async fn no_password_in_any_childs_argv_or_environment_nor_in_stderr_records_or_errors(major) {
    let source = cluster(major);
    source.sql("create role shop_owner; create database shop owner shop_owner").unwrap();
    source
        .sql_db("shop", "create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 100) g; alter table items owner to shop_owner;")
        .unwrap();
    fill_big(&source, "shop");
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(&store_dir.path().join("store"), true).unwrap();
    // A variable of the caller's environment: the children must not inherit it.
    let verbose = SpawnOptions {
        env: vec![("RUST_LOG".into(), "trace".into()), ("E2E_CALLER_ONLY".into(), "1".into())],
        ..SpawnOptions::default()
    };
    let mut seen: Vec<procs::Proc> = Vec::new();
    let mut stderrs = String::new();
    let mut errors: Vec<String> = Vec::new();

    // Backups with the password in the location: one database (pg_dumpall --globals-only,
    // pg_dump), then the whole cluster (pg_dumpall, which runs pg_dump through sh). The
    // processes are read from /proc all along, and for certain while the host holds the first
    // chunk of a dump (the dump's tool is then still running).
    let mut snapshots = Vec::new();
    for (db, record, tool) in [("shop", "/shop.dump", "pg_dump"), ("", "/all.sql", "pg_dumpall")] {
        let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlImporter"), &verbose).await.unwrap();
        let watcher = Arc::new(procs::Watcher::start(plugin.pid));
        let init = import::init(
            plugin.channel(),
            "postgres",
            config(&[("location", url(&source, db)), ("pg_bin_dir", pg_bin_dir(major))]),
            4,
        )
        .await
        .expect("Init");
        let running: RunningAt = Arc::default();
        let mut settings = Settings::new(4, store.clone());
        let (w, r) = (Arc::clone(&watcher), Arc::clone(&running));
        settings.on_chunk = Some(Arc::new(move |path, _| {
            let mut r = r.lock().unwrap();
            if !r.contains_key(path) {
                r.insert(path.to_owned(), comms(&w.snapshot()));
            }
        }));
        let outcome = import::run(plugin.channel(), &init, settings).await;
        assert_eq!(outcome.result, Ok(()), "{}", plugin.stderr());
        import::client(plugin.channel()).close(e2e::proto::importer::CloseRequest {}).await.unwrap();
        let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
        assert!(status.success(), "{stderr}");
        let running = running.lock().unwrap().clone();
        assert!(
            running.get(record).is_some_and(|c| c.contains(tool)),
            "{tool} running at the first chunk of {record}: {running:?}"
        );
        seen.extend(watcher.seen());
        stderrs.push_str(&stderr);
        snapshots.push(outcome.snapshot);
    }
    assert!(stderrs.contains("TRACE") || stderrs.contains("DEBUG"), "verbose logging was on");

    // Restores with the password in the location: globals.sql (psql) and shop.dump
    // (pg_restore) into a fresh cluster, all.sql (psql) into another. Each tool is read from
    // /proc for certain while the host holds back the end of its file.
    let targets = [cluster(major), cluster(major)];
    targets[0].sql("create database shop").unwrap();
    let jobs = [
        (&targets[0], &snapshots[0], vec![("/globals.sql", "psql"), ("/shop.dump", "pg_restore")]),
        // On 12, psql stops at the first `\connect` to a database it could not create (see
        // below), possibly before the end of its input.
        (&targets[1], &snapshots[1], if major == 12 { vec![] } else { vec![("/all.sql", "psql")] }),
    ];
    for (target, snapshot, expect) in jobs {
        let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlExporter"), &verbose).await.unwrap();
        let watcher = Arc::new(procs::Watcher::start(plugin.pid));
        let cfg = config(&[
            ("location", url(target, "")),
            ("pg_bin_dir", pg_bin_dir(major)),
            ("restore_globals", "true".into()),
        ]);
        export::init(plugin.channel(), "postgres", cfg).await.expect("exporter Init");
        let running: RunningAt = Arc::default();
        let (w, r) = (Arc::clone(&watcher), Arc::clone(&running));
        let tools: BTreeMap<String, &'static str> = expect.iter().map(|(p, t)| (p.to_string(), *t)).collect();
        let settings = export::ExportSettings {
            // The plugin may not have the file's start yet (the host's queue): wait for the
            // tool, which then waits for the rest of its input.
            before_end: Some(Arc::new(move |path| {
                let Some(tool) = tools.get(path) else { return };
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let mut now = comms(&w.snapshot());
                while !now.contains(*tool) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    now = comms(&w.snapshot());
                }
                r.lock().unwrap().insert(path.to_owned(), now);
            })),
            ..Default::default()
        };
        let outcome = export::run(plugin.channel(), snapshot, &store, "/", settings).await;
        export::client(plugin.channel()).close(e2e::proto::exporter::CloseRequest {}).await.unwrap();
        let (status, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
        assert!(status.success(), "{stderr}");
        if major == 12 && std::ptr::eq(snapshot, &snapshots[1]) {
            // pg_dumpall 14's all.sql cannot be replayed into 12 (see above): the error is
            // checked for the password below.
            errors.push(outcome.result.clone().unwrap_err());
        } else {
            assert_eq!(outcome.result, Ok(()), "{:?}\n{stderr}", outcome.results);
        }
        errors.extend(outcome.results.iter().map(|(_, e)| e.clone()));
        let running = running.lock().unwrap().clone();
        for (path, tool) in expect {
            assert!(
                running.get(path).is_some_and(|c| c.contains(tool)),
                "{tool} running before the end of {path}: {running:?}"
            );
        }
        seen.extend(watcher.seen());
        stderrs.push_str(&stderr);
    }
    assert_eq!(targets[0].sql_db("shop", "select count(*) from big").unwrap(), BIG_ROWS.to_string());

    // Failures: a wrong password (which contains the right one) for a backup and a restore.
    let wrong = format!("postgres://{USER}:{PASSWORD}-wrong@127.0.0.1:{}/shop", source.port());
    let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlImporter"), &verbose).await.unwrap();
    let cfg = config(&[("location", wrong.clone()), ("pg_bin_dir", pg_bin_dir(major))]);
    let init = import::init(plugin.channel(), "postgres", cfg.clone(), 4).await.expect("Init");
    let failed = import::run(plugin.channel(), &init, Settings::new(4, store.clone())).await;
    let msg = failed.result.clone().unwrap_err();
    assert!(msg.contains("password authentication failed"), "{msg}");
    errors.push(msg);
    let (_, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    stderrs.push_str(&stderr);
    let plugin = Plugin::spawn(&e2e::plugin_binary("postgresqlExporter"), &verbose).await.unwrap();
    export::init(plugin.channel(), "postgres", cfg).await.expect("exporter Init");
    let failed = export::run(plugin.channel(), &snapshots[0], &store, "/", export::ExportSettings::default()).await;
    let msg = failed.result.clone().unwrap_err();
    assert!(msg.contains("password authentication failed"), "{msg}");
    errors.push(msg);
    errors.extend(failed.results.iter().map(|(_, e)| e.clone()));
    let (_, stderr) = plugin.close_stdin_and_wait(Duration::from_secs(10)).await.unwrap();
    stderrs.push_str(&stderr);

    // Every child's argv and environment, all four tools seen.
    let names = comms(&seen);
    for tool in ["pg_dump", "pg_dumpall", "pg_restore", "psql"] {
        assert!(names.contains(tool), "{tool} not seen among the children: {names:?}");
    }
    for p in &seen {
        assert!(!p.mentions(PASSWORD), "the password is in the argv or environment of a child: {p:?}");
        // A fork not yet exec'd still shows the plugin's own environment.
        if !p.comm.starts_with("postgresql") {
            let inherited = p.environ.iter().any(|v| v.starts_with("E2E_CALLER_ONLY="));
            assert!(!inherited, "a child inherited the caller's environment: {p:?}");
        }
    }
    // The plugins' stderr (at trace level), the error messages, the stored records (the
    // snapshots' files, /manifest.json included) and the snapshots' indexes.
    assert!(!stderrs.contains(PASSWORD), "the password reached a plugin's stderr");
    for e in &errors {
        assert!(!e.contains(PASSWORD), "the password is in an error message: {e}");
    }
    for (i, s) in snapshots.iter().enumerate() {
        let manifest = export::content(&store, &s.entries["/manifest.json"]);
        assert!(!String::from_utf8_lossy(&manifest).contains(PASSWORD));
        let dir = store_dir.path().join(format!("index-{i}"));
        std::fs::create_dir(&dir).unwrap();
        s.save(&dir).unwrap();
    }
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", PASSWORD])
        .arg(store_dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(grep.status.code(), Some(1), "the password is stored: {}", String::from_utf8_lossy(&grep.stdout));
    eprintln!("{} child processes seen: {names:?}", seen.len());
});

/// Go's zero `time.Time` (year 1) in Unix seconds: the mtime of the Go plugin's dump records.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Runs a client tool as the Go plugin did (`pgconn` `Args()` and `Env()`): `-h <host> -p
/// <port> -w -U <user>` then `args`, the password in `PGPASSWORD`, `PGCONNECT_TIMEOUT=10`.
fn go_tool(major: u32, cluster: &TestCluster, tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(std::path::Path::new(&pg_bin_dir(major)).join(tool))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string(), "-w", "-U", USER])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Stores `content` in `store` as a record the Go plugin emitted (mode 0444, the size the host
/// read).
fn go_record(snapshot: &mut Snapshot, store: &BlobStore, path: &str, content: &[u8], mtime_secs: i64) {
    let mut w = store.writer().unwrap();
    w.write(content).unwrap();
    let hash = store.commit(w).unwrap();
    let info = Info {
        name: e2e::store::base(path).into(),
        size: content.len() as i64,
        mode: 0o444,
        mtime_secs,
        nlink: 1,
        ..Info::default()
    };
    snapshot.entries.insert(path.into(), Entry { info, content: Some(hash), ..Entry::default() });
}

per_major!(async fn a_go_layout_snapshot_restores_through_the_exporter(major) {
    let source = cluster(major);
    source
        .sql("create role shop_owner login password 'owner-secret'; create role reader nologin; create database shop owner shop_owner;")
        .unwrap();
    source
        .sql_db("shop", "create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 5000) g; alter table items owner to shop_owner; grant select on items to reader;")
        .unwrap();

    // The snapshot the Go plugin (later releases, a whole-cluster backup) wrote: /manifest.json,
    // /00000-globals.sql from `pg_dumpall --globals-only`, then one /NNNNN-<db>.dump per
    // connectable database in name order, from `pg_dump -Fc -Z0 <db>` (compress=false), run
    // with the Go plugin's arguments and environment. Dumps have mtime year 1 and mode 0444.
    let store_dir = ScratchDir::new().unwrap();
    let store = BlobStore::new(store_dir.path(), true).unwrap();
    let mut snapshot =
        Snapshot { root: "/".into(), r#type: "postgresql".into(), origin: "127.0.0.1".into(), ..Snapshot::default() };
    let globals = go_tool(major, &source, "pg_dumpall", &["--globals-only"]);
    go_record(&mut snapshot, &store, "/00000-globals.sql", &globals, GO_ZERO_TIME);
    let databases = source.sql("select datname from pg_database where datallowconn order by datname").unwrap();
    let databases: Vec<&str> = databases.lines().collect();
    assert_eq!(databases, ["postgres", "shop", "template1"]);
    for (i, db) in databases.iter().enumerate() {
        let dump = go_tool(major, &source, "pg_dump", &["-Fc", "-Z0", db]);
        go_record(&mut snapshot, &store, &format!("/{:05}-{db}.dump", i + 1), &dump, GO_ZERO_TIME);
    }
    let pg_dump = std::path::Path::new(&pg_bin_dir(major)).join("pg_dump");
    let pg_dump_version = Command::new(pg_dump).arg("--version").output().unwrap();
    let pg_dump_version = String::from_utf8(pg_dump_version.stdout).unwrap();
    let roles = source
        .sql(
            "select json_agg(json_build_object('name', rolname, 'superuser', rolsuper, \
             'replication', rolreplication, 'can_login', rolcanlogin, 'create_db', rolcreatedb, \
             'create_role', rolcreaterole, 'inherit', rolinherit, 'bypass_rls', rolbypassrls, \
             'connection_limit', rolconnlimit, 'valid_until', null) order by rolname) from pg_roles",
        )
        .unwrap();
    let manifest = serde_json::json!({
        "version": 2,
        "created_at": "2026-05-08T10:00:00.123456789Z",
        "connector": "postgresql",
        "host": "127.0.0.1",
        "port": source.port().to_string(),
        "server_version": source.sql("show server_version").unwrap(),
        "server_version_num": source.sql("show server_version_num").unwrap().parse::<i64>().unwrap(),
        "pg_dump_version": pg_dump_version.trim(),
        "cluster_system_identifier": source.sql("select system_identifier::text from pg_control_system()").unwrap(),
        "in_recovery": false,
        "dump_format": "custom",
        "options": { "schema_only": false, "data_only": false, "compress": false },
        "roles": serde_json::from_str::<serde_json::Value>(&roles).unwrap(),
    });
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    go_record(&mut snapshot, &store, "/manifest.json", &manifest, 1_778_234_400);
    snapshot.relink();

    // Restored through the exporter, in Plakar's walk order (globals first in this layout),
    // into a fresh cluster where the database exists (the Go plugin's default restore mode;
    // and a 12 target cannot take `CREATE DATABASE` from a newer pg_dump).
    let target = cluster(major);
    target.sql("create database shop").unwrap();
    let restored = restore(&target, &[("restore_globals", "true".into())], &snapshot, &store, "/").await;
    assert_eq!(restored.result, Ok(()), "{:?}", restored.results);
    let paths: Vec<&str> = restored.results.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/", "/00000-globals.sql", "/00001-postgres.dump", "/00002-shop.dump", "/00003-template1.dump", "/manifest.json"]
    );
    assert!(restored.results.iter().all(|(_, e)| e.is_empty()), "{:?}", restored.results);

    // The data, in the database named by the file (not "00002-shop"), and the globals: roles
    // with their attributes and password, the owner and the grant.
    assert_eq!(target.sql_db("shop", "select count(*), sum(id) from items").unwrap(), "5000|12502500");
    assert_eq!(target.sql("select count(*) from pg_database where datname like '0%'").unwrap(), "0");
    assert_eq!(target.sql_db("shop", "select tableowner from pg_tables where tablename = 'items'").unwrap(), "shop_owner");
    assert_eq!(target.sql_db("shop", "select has_table_privilege('reader', 'items', 'select')").unwrap(), "t");
    let role = "select rolcanlogin, rolpassword from pg_authid where rolname = 'shop_owner'";
    assert_eq!(target.sql(role).unwrap(), source.sql(role).unwrap());
    assert!(target.sql(role).unwrap().starts_with("t|SCRAM-SHA-256$"));
    assert_eq!(target.sql("select rolcanlogin from pg_roles where rolname = 'reader'").unwrap(), "f");
});
