//! Failure paths and server-side compression of the physical backup, against real servers
//! 12–18 (protocol.md §4.4, §4.5, §7, §14 items 13 and 22).
//!
//! Every failure must end with an error that says what and where, the directory sink aborted
//! (its marker holds the reason, no `PG_VERSION`), no replication slot or walsender left on the
//! server and no WAL spool left on disk. A cut TCP connection, which a real server does not
//! produce on demand, comes from a small proxy in front of a real server.

mod common;
use common::run;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dir_sink::{DirSink, DirSinkOptions, INCOMPLETE_MARKER};
use pg_config::Config;
use pg_physical::{BackupOptions, BackupReport, Compression, PhysicalError, RunOptions, WalMethod};
use pg_testkit::{Auth, ClusterOptions, ScratchDir, ServerSource, TestCluster, User, per_major};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP connection to `port` on 127.0.0.1 (trust, superuser) unless `user` says otherwise.
fn config_at(port: u16, extra: &str) -> Config {
    Config::parse(&format!("host=127.0.0.1 port={port} dbname=postgres sslmode=disable {extra}")).unwrap()
}

fn config(cluster: &TestCluster) -> Config {
    config_at(cluster.port(), "user=postgres")
}

/// Where one backup goes: a data directory to create and a private WAL spool parent.
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
    fn sink(&self) -> DirSink {
        DirSink::create(DirSinkOptions::new(self.data())).unwrap()
    }

    /// The sink was aborted with a reason containing `needle`, and nothing looks like a backup.
    fn assert_aborted(&self, needle: &str) {
        let marker = std::fs::read_to_string(self.data().join(INCOMPLETE_MARKER))
            .unwrap_or_else(|e| panic!("no abort marker in {}: {e}", self.data().display()));
        assert!(marker.contains("ABORTED"), "{marker}");
        assert!(marker.contains(needle), "the abort marker should say {needle:?}: {marker}");
        assert!(!self.data().join("PG_VERSION").exists(), "an aborted backup must not look like a data dir");
        assert!(!self.data().join("backup_manifest").exists());
        self.assert_no_spool();
    }

    fn assert_no_spool(&self) {
        let left: Vec<_> = std::fs::read_dir(self.scratch.path().join("spool")).unwrap().collect();
        assert!(left.is_empty(), "WAL spool left behind: {left:?}");
    }
}

async fn backup(
    config: &Config,
    options: &BackupOptions,
    target: &Target,
) -> Result<BackupReport, PhysicalError> {
    let mut sink = target.sink();
    common::backup(config, options, &target.run(), &mut sink).await
}

/// Runs a backup on its own thread and runtime, so the test can poll the server meanwhile.
fn spawn_backup(
    config: Config,
    options: BackupOptions,
    run: RunOptions,
    data: PathBuf,
) -> std::thread::JoinHandle<Result<BackupReport, PhysicalError>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
            common::backup(&config, &options, &run, &mut sink).await
        })
    })
}

/// Slots and walsenders on the server go back to zero within a few seconds.
async fn assert_server_clean(cluster: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots = cluster.sql("select count(*) from pg_replication_slots").unwrap();
        let senders =
            cluster.sql("select count(*) from pg_stat_activity where backend_type = 'walsender'").unwrap();
        if slots == "0" && senders == "0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left on the server after 10 s: {slots} replication slots, {senders} walsenders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn err_text(e: &PhysicalError) -> String {
    e.to_string()
}

/// A file in the data directory owned by the server user.
fn server_file(cluster: &TestCluster, name: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = cluster.data_dir().join(name);
    std::fs::write(&path, "x\n").unwrap();
    let (uid, gid) = cluster.server_user_ids();
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// 1. Page-checksum failure (XX001 after the end result set)

per_major!(async fn page_checksum_failure_fails_the_backup(major) {
    let mut cluster = TestCluster::start_with(major, ClusterOptions::new().checksums(true)).unwrap();
    cluster
        .sql(
            "create table victim (g int, t text) with (autovacuum_enabled = off);
             insert into victim select g, repeat(md5(g::text), 4) from generate_series(1, 3000) g;
             vacuum freeze victim; checkpoint;",
        )
        .unwrap();
    let rel = cluster.sql("select pg_relation_filepath('victim')").unwrap();
    cluster.stop().unwrap();
    // Flip 16 bytes in the middle of block 1: its header (and LSN, older than the backup's
    // start) stays intact, so the server verifies the page and finds the checksum wrong.
    let file = cluster.data_dir().join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() >= 3 * 8192, "{rel} is only {} bytes", bytes.len());
    for b in &mut bytes[8192 + 4000..8192 + 4016] {
        *b ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    cluster.restart().unwrap();

    let target = Target::new();
    let err = backup(&config(&cluster), &BackupOptions::default(), &target).await.unwrap_err();
    let text = err_text(&err);
    assert_eq!(err.code(), Some("XX001"), "{text}");
    assert!(text.contains("checksum verification failure during base backup"), "{text}");
    // The warnings that say which file and block are part of the error.
    assert!(text.contains(&format!("checksum verification failed in file \"./{rel}\", block 1")), "{text}");
    assert!(text.contains("after the end of the backup"), "the data was complete: {text}");
    target.assert_aborted("XX001");
    assert_server_clean(&cluster).await;

    // The same backup without page verification succeeds (and keeps the page as it is).
    let target = Target::new();
    let options = BackupOptions { verify_checksums: false, ..BackupOptions::default() };
    let report = backup(&config(&cluster), &options, &target).await.unwrap();
    assert!(report.summary.warnings.iter().all(|w| !w.contains("checksum")), "{:?}", report.summary.warnings);
    assert_eq!(std::fs::read(target.data().join(&rel)).unwrap(), bytes);
    assert!(target.data().join("PG_VERSION").is_file());
    assert!(!target.data().join(INCOMPLETE_MARKER).exists());
    assert_server_clean(&cluster).await;
});

// ---------------------------------------------------------------------------------------------
// 2. A server error in the middle: an unreadable file (42501, no CopyDone)

per_major!(async fn unreadable_file_fails_the_backup(major) {
    let cluster = TestCluster::start(major).unwrap();
    server_file(&cluster, "unreadable_file", 0o000);
    for wal_method in [WalMethod::Fetch, WalMethod::Stream] {
        let target = Target::new();
        let options = BackupOptions { wal_method, ..BackupOptions::default() };
        let err = backup(&config(&cluster), &options, &target).await.unwrap_err();
        let text = err_text(&err);
        assert_eq!(err.code(), Some("42501"), "{wal_method:?}: {text}");
        assert!(text.contains("could not open file \"./unreadable_file\""), "{text}");
        assert!(text.contains("in archive \"base.tar\""), "where: {text}");
        target.assert_aborted("42501");
        assert_server_clean(&cluster).await;
    }
});

// ---------------------------------------------------------------------------------------------
// 3. A terminated walsender in the middle of the backup

/// Waits for a walsender matching `state_filter` (on `pg_stat_replication`) and terminates it.
async fn terminate_walsender(cluster: &TestCluster, state_filter: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid = cluster
            .sql(&format!("select pid from pg_stat_replication where {state_filter} limit 1"))
            .unwrap();
        if !pid.is_empty() {
            // Let it run a moment so the backup is well under way.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(cluster.sql(&format!("select pg_terminate_backend({pid})")).unwrap(), "t");
            return;
        }
        assert!(Instant::now() < deadline, "no walsender with {state_filter} appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn killed_walsender(major: u32, wal_method: WalMethod, state_filter: &str) -> (String, PhysicalError) {
    let cluster = TestCluster::start(major).unwrap();
    let target = Target::new();
    // ~25 MB at 128 kB/s: minutes, so the backup is surely running when its walsender dies.
    let options = BackupOptions { wal_method, max_rate: Some(128), ..BackupOptions::default() };
    let started = Instant::now();
    let handle = spawn_backup(config(&cluster), options, target.run(), target.data());
    terminate_walsender(&cluster, state_filter).await;
    let err = handle.join().unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60), "the failure took {:?}", started.elapsed());
    let text = err_text(&err);
    assert!(
        text.contains("57P01") || text.contains("closed the connection unexpectedly"),
        "{wal_method:?}: {text}"
    );
    let needle = text.lines().next().unwrap().chars().take(40).collect::<String>();
    target.assert_aborted(&needle);
    assert_server_clean(&cluster).await;
    (text, err)
}

per_major!(async fn terminated_backup_walsender(major) {
    let (text, _) = killed_walsender(major, WalMethod::Fetch, "state = 'backup'").await;
    assert!(text.contains("terminating connection due to administrator command"), "{text}");
    assert!(text.contains("in archive"), "where: {text}");
});

per_major!(async fn terminated_wal_streaming_walsender(major) {
    let (text, err) = killed_walsender(major, WalMethod::Stream, "state in ('catchup', 'streaming')").await;
    assert!(text.contains("WAL streaming connection"), "which connection: {text}");
    // The server's error on the WAL connection keeps its SQLSTATE and says how far the stream
    // had got (when the server had time to send it before closing the socket).
    if text.contains("57P01") {
        assert_eq!(err.code(), Some("57P01"), "{text}");
        assert!(text.contains("the server failed the WAL stream at "), "{text}");
    }
});

per_major!(async fn no_walsender_left_for_the_wal_connection(major) {
    // Stream mode needs two walsenders: with one allowed, the WAL connection is refused.
    let cluster = TestCluster::start_with(major, ClusterOptions::new().conf("max_wal_senders = 1")).unwrap();
    let target = Target::new();
    let options = BackupOptions { wal_method: WalMethod::Stream, ..BackupOptions::default() };
    let err = backup(&config(&cluster), &options, &target).await.unwrap_err();
    let text = err_text(&err);
    assert!(matches!(err, PhysicalError::WalConnection { .. }), "{err:?}");
    assert_eq!(err.code(), Some("53300"), "{text}");
    assert!(text.starts_with("WAL streaming connection, connecting: "), "{text}");
    assert!(text.contains("max_wal_senders"), "{text}");
    target.assert_aborted("53300");
    assert_server_clean(&cluster).await;
    // Fetch mode needs one: it works.
    let target = Target::new();
    backup(&config(&cluster), &BackupOptions::default(), &target).await.unwrap();
    assert!(target.data().join("PG_VERSION").is_file());
});

// ---------------------------------------------------------------------------------------------
// 4. A connection cut at the TCP level (a proxy in front of a real server)

/// When the proxy cuts the server-to-client direction of one connection.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// After forwarding this many bytes.
    Bytes(u64),
    /// Right after forwarding the first message with this type byte.
    AfterTag(u8),
    /// Right before the first message with type `cut` that follows one with type `seen`.
    BeforeTagAfter { seen: u8, cut: u8 },
}

#[derive(Clone, Copy, Debug)]
struct Cut {
    /// Which accepted connection (0 = the first).
    connection: usize,
    rule: Rule,
}

/// A TCP proxy to a real server that records what clients send and may cut one connection.
struct Proxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    sent_by_client: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(server_port: u16, cut: Option<Cut>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let sent_by_client = Arc::new(Mutex::new(Vec::new()));
        let (n, sent) = (connections.clone(), sent_by_client.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let index = n.fetch_add(1, Ordering::SeqCst);
                let rule = cut.filter(|c| c.connection == index).map(|c| c.rule);
                tokio::spawn(pipe(client, server_port, rule, sent.clone()));
            }
        });
        Proxy { port, connections, sent_by_client, task }
    }

    fn client_sent(&self, needle: &str) -> bool {
        let sent = self.sent_by_client.lock().unwrap();
        sent.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

async fn pipe(client: TcpStream, server_port: u16, rule: Option<Rule>, sent: Arc<Mutex<Vec<u8>>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else { return };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = cr.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            sent.lock().unwrap().extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut forwarded = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        let mut seen = false;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = sr.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let out: Vec<u8> = match rule {
                None => buf[..n].to_vec(),
                Some(Rule::Bytes(limit)) => {
                    let room = (limit - forwarded).min(n as u64) as usize;
                    forwarded += room as u64;
                    let _ = cw.write_all(&buf[..room]).await;
                    if forwarded >= limit {
                        return;
                    }
                    continue;
                }
                Some(Rule::AfterTag(tag)) | Some(Rule::BeforeTagAfter { cut: tag, .. }) => {
                    // Forward whole messages only, so the cut lands on a message boundary.
                    pending.extend_from_slice(&buf[..n]);
                    let mut out = Vec::new();
                    while pending.len() >= 5 {
                        let len = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize;
                        if pending.len() < 1 + len {
                            break;
                        }
                        let t = pending[0];
                        match rule {
                            Some(Rule::BeforeTagAfter { seen: s, .. }) => {
                                if t == tag && seen {
                                    let _ = cw.write_all(&out).await;
                                    return;
                                }
                                seen |= t == s;
                                out.extend(pending.drain(..1 + len));
                            }
                            _ => {
                                out.extend(pending.drain(..1 + len));
                                if t == tag {
                                    let _ = cw.write_all(&out).await;
                                    return;
                                }
                            }
                        }
                    }
                    out
                }
            };
            if cw.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending closes both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn cut_backup(cluster: &TestCluster, wal_method: WalMethod, cut: Cut) -> (String, Target) {
    let proxy = Proxy::start(cluster.port(), Some(cut)).await;
    let target = Target::new();
    let options = BackupOptions { wal_method, max_rate: Some(4096), ..BackupOptions::default() };
    let err = backup(&config_at(proxy.port, "user=postgres"), &options, &target).await.unwrap_err();
    let text = err_text(&err);
    assert!(text.contains("the server closed the connection unexpectedly"), "{cut:?}: {text}");
    assert!(text.contains(&format!("port {}", proxy.port)), "which server: {text}");
    target.assert_aborted("closed the connection unexpectedly");
    drop(proxy);
    assert_server_clean(cluster).await;
    (text, target)
}

per_major!(async fn tcp_connection_cut(major) {
    let cluster = TestCluster::start(major).unwrap();
    // In the middle of the main archive.
    let cut = Cut { connection: 0, rule: Rule::Bytes(1 << 20) };
    let (text, _) = cut_backup(&cluster, WalMethod::Fetch, cut).await;
    assert!(text.contains("base backup interrupted after "), "{text}");
    assert!(text.contains("bytes of the BASE_BACKUP response, in archive \"base.tar\", file /data/"), "{text}");

    // Everything arrived, the final CommandComplete too, but not ReadyForQuery: not a backup.
    let cut = Cut { connection: 0, rule: Rule::BeforeTagAfter { seen: b'H', cut: b'Z' } };
    let (text, _) = cut_backup(&cluster, WalMethod::Fetch, cut).await;
    assert!(text.contains("after the end of the backup (before the server's final completion)"), "{text}");

    // Stream mode: the WAL connection (the second one) is cut right after START_REPLICATION
    // was answered.
    let cut = Cut { connection: 1, rule: Rule::AfterTag(b'W') };
    let (text, _) = cut_backup(&cluster, WalMethod::Stream, cut).await;
    assert!(text.contains("WAL streaming connection, at "), "{text}");

    // The same proxy without a cut: the backup works through it (the cuts were the cause).
    let proxy = Proxy::start(cluster.port(), None).await;
    let target = Target::new();
    let report = backup(&config_at(proxy.port, "user=postgres"), &BackupOptions::default(), &target).await.unwrap();
    assert!(report.summary.files > 500, "{:?}", report.summary);
    assert!(target.data().join("PG_VERSION").is_file());
});

// ---------------------------------------------------------------------------------------------
// 5. Bad options: refused before anything is sent, nothing created on the server

per_major!(async fn bad_options_are_refused_before_anything_is_sent(major) {
    let cluster = TestCluster::start(major).unwrap();
    let proxy = Proxy::start(cluster.port(), None).await;
    let cfg = config_at(proxy.port, "user=postgres");
    let cases = [
        (BackupOptions { max_rate: Some(31), ..BackupOptions::default() }, "max_rate 31 kB/s is outside"),
        (BackupOptions { max_rate: Some(1_048_577), ..BackupOptions::default() }, "max_rate 1048577"),
        (BackupOptions { label: "two\nlines".into(), ..BackupOptions::default() }, "line break"),
        (BackupOptions { compression: Compression::Gzip(Some(10)), ..BackupOptions::default() }, "gzip level 10"),
    ];
    for (options, message) in cases {
        let target = Target::new();
        let err = backup(&cfg, &options, &target).await.unwrap_err();
        assert!(matches!(err, PhysicalError::Options(_)), "{err:?}");
        assert!(err_text(&err).contains(message), "{err}");
        target.assert_aborted(message);
        assert_eq!(proxy.connections.load(Ordering::SeqCst), 0, "{message}: no connection for a bad option");
    }

    // Compression needs the server's version: one connection, but no slot and no BASE_BACKUP.
    let target = Target::new();
    let options = BackupOptions { compression: Compression::Gzip(None), ..BackupOptions::default() };
    let result = backup(&cfg, &options, &target).await;
    if major < 15 {
        let err = result.unwrap_err();
        assert_eq!(
            err_text(&err),
            format!("server-side compression needs PostgreSQL 15 or later (the server is {major})")
        );
        target.assert_aborted("needs PostgreSQL 15");
        assert_eq!(proxy.connections.load(Ordering::SeqCst), 1);
        assert!(!proxy.client_sent("CREATE_REPLICATION_SLOT") && !proxy.client_sent("BASE_BACKUP"));
    } else {
        result.unwrap();
        assert!(proxy.client_sent("COMPRESSION 'gzip'"));
    }
    assert_server_clean(&cluster).await;
});

// ---------------------------------------------------------------------------------------------
// 6. Server-side compression

/// A source with data in two tablespaces (two archives) and checksums.
fn compression_source(major: u32, source: ServerSource) -> TestCluster {
    let cluster =
        TestCluster::start_with(major, ClusterOptions::new().checksums(true).server_source(source)).unwrap();
    cluster.create_tablespace("ts").unwrap();
    cluster
        .sql(
            "create table main_t as select g, md5(g::text) || md5((g * 7)::text) as t
               from generate_series(1, 40000) g;
             create table ts_t tablespace ts as select g, md5(g::text) as t from generate_series(1, 20000) g;
             checkpoint;",
        )
        .unwrap();
    cluster
}

const CONTENT: &str = "select (select md5(string_agg(t, ',' order by g)) from main_t) || \
                       (select md5(string_agg(t, ',' order by g)) from ts_t)";

async fn compressed_round_trip(cluster: &TestCluster, compression: Compression, wal_method: WalMethod) {
    let major = cluster.major();
    let target = Target::new();
    let options = BackupOptions { compression, wal_method, ..BackupOptions::default() };
    let report = backup(&config(cluster), &options, &target)
        .await
        .unwrap_or_else(|e| panic!("{compression:?} backup failed: {e}"));
    // The records are the decompressed files: every one matched the manifest.
    assert!(report.summary.verified_files > 500, "{compression:?}: {:?}", report.summary);
    assert_eq!(std::fs::read_to_string(target.data().join("PG_VERSION")).unwrap().trim(), major.to_string());
    target.assert_no_spool();
    pg_testkit::give_to_server_user(target.scratch.path()).unwrap();
    let verify = pg_testkit::client_bin_for_major("pg_verifybackup", major).unwrap();
    run(Command::new(verify).arg(target.data()));
    let copy = TestCluster::start_existing(major, target.data(), ClusterOptions::new()).unwrap();
    assert_eq!(copy.sql(CONTENT).unwrap(), cluster.sql(CONTENT).unwrap(), "{compression:?}");
    assert_eq!(copy.sql("select count(*) from ts_t").unwrap(), "20000");
}

per_major!(async fn server_side_compression(major) {
    if major < 15 {
        // No server-side compression before 15: refused before anything is sent.
        let cluster = TestCluster::start(major).unwrap();
        for compression in [Compression::Gzip(None), Compression::Lz4, Compression::Zstd(None)] {
            let target = Target::new();
            let options = BackupOptions { compression, ..BackupOptions::default() };
            let err = backup(&config(&cluster), &options, &target).await.unwrap_err();
            assert!(err_text(&err).contains("needs PostgreSQL 15 or later"), "{err}");
            target.assert_aborted("needs PostgreSQL 15");
        }
        assert_server_clean(&cluster).await;
        return;
    }
    // gzip: every build has it (the npm servers have only gzip).
    let cluster = compression_source(major, ServerSource::Embedded);
    compressed_round_trip(&cluster, Compression::Gzip(Some(5)), WalMethod::Fetch).await;
    drop(cluster);

    // lz4 (15+) and zstd (16+ in the PyPI builds) on full builds.
    let cluster = compression_source(major, ServerSource::Full);
    compressed_round_trip(&cluster, Compression::Lz4, WalMethod::Stream).await;
    if major >= 16 {
        compressed_round_trip(&cluster, Compression::Zstd(Some(3)), WalMethod::Fetch).await;
    } else {
        // This 15 build has no zstd: the server refuses the option, clearly, and nothing stays.
        let target = Target::new();
        let options = BackupOptions { compression: Compression::Zstd(None), ..BackupOptions::default() };
        let err = backup(&config(&cluster), &options, &target).await.unwrap_err();
        let text = err_text(&err);
        assert!(text.contains("does not support compression with ZSTD"), "{text}");
        assert_eq!(err.code(), Some("42601"), "{text}");
        target.assert_aborted("ZSTD");
        assert_server_clean(&cluster).await;
    }
});

// ---------------------------------------------------------------------------------------------
// 7. No password in errors, Debug output, logs or recordings

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything every test of this binary logs, at every level. A global subscriber: a scoped
/// one (`set_default`) misses events when parallel tests race on `tracing`'s callsite cache.
fn captured_logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

per_major!(async fn no_password_in_errors_logs_or_recordings(major) {
    const PASSWORD: &str = "Pw-7f3e9c-corr3ct";
    const WRONG: &str = "Pw-1d2b8a-wr0ng";
    let cluster = TestCluster::start_with(
        major,
        ClusterOptions::new().tcp_auth(Auth::ScramSha256).user(User::new("alice").password(PASSWORD).replication()),
    )
    .unwrap();
    let logs = captured_logs();
    let clean = |what: &str, text: &str| {
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "a password in {what}: {text}");
    };

    // A wrong password: a clear authentication error, without the password.
    let wrong = config_at(cluster.port(), &format!("user=alice password={WRONG}"));
    clean("the config's Debug output", &format!("{wrong:?}"));
    let target = Target::new();
    let err = backup(&wrong, &BackupOptions::default(), &target).await.unwrap_err();
    let text = err_text(&err);
    assert!(text.contains("password authentication failed for user \"alice\""), "{text}");
    assert_eq!(err.code(), Some("28P01"), "{text}");
    clean("the error", &text);
    clean("the error's Debug output", &format!("{err:?}"));
    let marker = std::fs::read_to_string(target.data().join(INCOMPLETE_MARKER)).unwrap();
    clean("the abort marker", &marker);
    assert!(marker.contains("28P01"), "{marker}");

    // The right password over SCRAM, recorded.
    let right = config_at(cluster.port(), &format!("user=alice password={PASSWORD}"));
    clean("the config's Debug output", &format!("{right:?}"));
    let target = Target::new();
    let recording = target.scratch.path().join("backup.rec");
    let run = RunOptions { record_to: Some(recording.clone()), ..target.run() };
    let mut sink = target.sink();
    let report = common::backup(&right, &BackupOptions::default(), &run, &mut sink).await.unwrap();
    clean("the report", &format!("{report:?}"));
    let recorded = std::fs::read(&recording).unwrap();
    assert!(recorded.len() > 1 << 20, "the recording holds the backup ({} bytes)", recorded.len());
    assert!(
        !recorded.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
        "the password is in the recording"
    );
    let logged = logs.text();
    // This test's own lines are there (the logs of the whole test binary are checked).
    assert!(logged.contains("password authentication failed for user \"alice\""), "{logged}");
    assert!(logged.contains(&format!("connected to host \"127.0.0.1\", port {}", cluster.port())), "{logged}");
    assert!(logged.contains("backup complete"), "{logged}");
    clean("the logs", &logged);
    // And nowhere in the backup itself.
    for entry in ["postgresql.auto.conf", "backup_label", "backup_manifest"] {
        let path = target.data().join(entry);
        if path.exists() {
            clean(entry, &String::from_utf8_lossy(&std::fs::read(path).unwrap()));
        }
    }
    assert_server_clean(&cluster).await;
});
