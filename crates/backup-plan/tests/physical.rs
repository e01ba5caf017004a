//! The orchestrator against real servers 12–18: `/manifest.json` then the base backup into one
//! sink; a failing step aborts the sink; cancellation aborts it and leaves no slot behind; a
//! consumer that skips files or stops reading them mid-way still gets a complete, verified
//! backup.

use std::time::Duration;

use backup_plan::{BackupError, CancellationToken, Plan, StepError};
use bytes::Bytes;
use cluster_manifest::MANIFEST_PATH;
use pg_config::Config;
use pg_physical::{BackupOptions, RunOptions};
use pg_testkit::TestCluster;
use record_sink::{EntryKind, Flow, NullSink, Record, RecordSink, SinkError, Wants};

fn config(cluster: &TestCluster) -> Config {
    Config::parse(&cluster.conninfo("postgres")).expect("the test cluster's conninfo")
}

/// A consumer with opinions: keeps the order of the records and the manifest's body, skips
/// every 7th file (a cache hit), stops reading every 5th file after its first chunk (a
/// cancelled `Open`), and hands the rest to a [`NullSink`] that checks the record protocol.
#[derive(Default)]
struct Consumer {
    inner: NullSink,
    paths: Vec<String>,
    manifest: Vec<u8>,
    files: u64,
    skipped: u64,
    stopped: u64,
    picky: bool,
    stop_current: bool,
}

impl RecordSink for Consumer {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        self.paths.push(record.path.to_string());
        let inner = self.inner.record(record).await?;
        self.stop_current = false;
        if let EntryKind::File { .. } = record.kind {
            self.files += 1;
            if self.picky && self.files.is_multiple_of(7) {
                self.skipped += 1;
                return Ok(Wants::Skip);
            }
            self.stop_current = self.picky && self.files.is_multiple_of(5);
        }
        Ok(inner)
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        if self.paths.len() == 1 {
            self.manifest.extend_from_slice(&chunk);
        }
        let _ = self.inner.data(chunk).await?;
        if self.stop_current {
            self.stop_current = false;
            self.stopped += 1;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        self.inner.end_file().await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish().await
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.inner.abort(reason).await
    }
}

pg_testkit::per_major!(async fn manifest_then_base_backup_into_one_sink(major) {
    let cluster = TestCluster::start(major).unwrap();
    cluster.sql("CREATE DATABASE app").unwrap();
    cluster.sql_db("app", "CREATE TABLE t (a int PRIMARY KEY)").unwrap();
    let mut plan = Plan::physical(config(&cluster), BackupOptions::default(), RunOptions::default(), true).unwrap();
    let mut sink = Consumer::default();
    let report = plan
        .run(&mut sink, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("backup failed: {}\n{}", backup_plan::chain(&e), cluster.log_contents()));
    let physical = report.physical().expect("a physical report");

    assert_eq!(sink.paths[0], MANIFEST_PATH);
    assert_eq!(sink.paths.iter().filter(|p| p.as_str() == MANIFEST_PATH).count(), 1);
    assert!(sink.paths.len() > 100, "{} records", sink.paths.len());
    assert!(sink.paths[1..].iter().all(|p| p.starts_with("/data")), "{:?}", &sink.paths[..10]);
    for file in ["/data/PG_VERSION", "/data/global/pg_control", "/data/backup_label"] {
        assert!(sink.paths.iter().any(|p| p == file), "{file} missing");
    }
    let stats = sink.inner.stats();
    assert!(stats.finished && stats.aborted.is_none(), "{stats:?}");

    // The record's body is the manifest as collected, and describes the cluster just backed up.
    let manifest = report.metadata().expect("a metadata report");
    assert_eq!(sink.manifest, cluster_manifest::manifest_json(manifest).unwrap().to_vec());
    let json: serde_json::Value = serde_json::from_slice(&sink.manifest).expect("JSON");
    assert_eq!(json["version"], 2);
    assert_eq!(json["connector"], "postgresql+bin");
    assert_eq!(json["cluster_system_identifier"].as_str(), Some(physical.server.system_identifier.to_string().as_str()));
    assert_eq!(json["server_version"].as_str(), Some(physical.server.server_version.as_str()));
    assert_eq!(json["server_version_num"].as_i64().map(|n| n / 10000), Some(i64::from(major)));
    let app = json["databases"].as_array().unwrap().iter().find(|d| d["name"] == "app").expect("database app");
    assert_eq!(app["relations"][0]["name"], "t");
});

pg_testkit::per_major!(async fn skipped_and_stopped_files_are_still_read_and_verified(major) {
    let cluster = TestCluster::start(major).unwrap();
    cluster.sql("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g").unwrap();
    let plan_for = || Plan::physical(config(&cluster), BackupOptions::default(), RunOptions::default(), false).unwrap();

    let mut all = Consumer::default();
    let reference = plan_for().run(&mut all, &CancellationToken::new()).await.unwrap();
    let reference = reference.physical().unwrap().summary.clone();

    let mut picky = Consumer { picky: true, ..Consumer::default() };
    let report = plan_for()
        .run(&mut picky, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("a picky consumer failed the backup: {}", backup_plan::chain(&e)));
    let summary = &report.physical().unwrap().summary;
    assert!(picky.skipped > 10 && picky.stopped > 10, "skipped {} stopped {}", picky.skipped, picky.stopped);
    assert!(picky.inner.stats().finished);
    // The consumer got less than everything…
    assert!(picky.inner.stats().bytes < summary.bytes, "{} of {}", picky.inner.stats().bytes, summary.bytes);
    // …but the source read every byte of every file and checked each against the manifest.
    assert_eq!(summary.files, reference.files);
    assert!(summary.bytes >= reference.bytes * 9 / 10, "{} vs {}", summary.bytes, reference.bytes);
    if major >= 13 {
        // Every file but the WAL segments (which backup_manifest does not list).
        let wal = picky.paths.iter().filter(|p| p.starts_with("/data/pg_wal/0")).count() as u64;
        assert!(wal > 0);
        assert_eq!(summary.verified_files + wal, summary.files, "every file verified");
    }
});

pg_testkit::per_major!(async fn a_failing_metadata_step_aborts_the_sink(major) {
    let cluster = TestCluster::start(major).unwrap();
    // A role that does not exist: the metadata step, the first, fails before any record, and
    // the base backup never starts.
    let config = Config::parse(&cluster.conninfo("no_such_role")).unwrap();
    let mut plan = Plan::physical(config, BackupOptions::default(), RunOptions::default(), true).unwrap();
    let mut sink = Consumer::default();
    let err = plan.run(&mut sink, &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(&err, BackupError::Step { error: StepError::Metadata(_), .. }), "{err:?}");
    let reason = sink.inner.stats().aborted.clone().expect("aborted");
    assert!(reason.starts_with("cluster metadata (/manifest.json) failed: "), "{reason}");
    assert!(reason.contains("no_such_role"), "{reason}");
    assert!(!sink.inner.stats().finished);
    assert!(sink.paths.is_empty(), "{:?}", sink.paths);
});

pg_testkit::per_major!(async fn cancellation_aborts_and_leaves_no_slot(major) {
    let cluster = TestCluster::start(major).unwrap();
    cluster.sql("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 50000) g").unwrap();
    for wal_method in [pg_physical::WalMethod::Fetch, pg_physical::WalMethod::Stream] {
        // A slow backup (max rate 32 kB/s) cancelled once it is under way.
        let options = BackupOptions { max_rate: Some(32), wal_method, ..BackupOptions::default() };
        let mut plan = Plan::physical(config(&cluster), options, RunOptions::default(), true).unwrap();
        let mut sink = Consumer::default();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let watch = config(&cluster);
        // Cancel once the server is sending the base backup.
        let watcher = tokio::spawn(async move {
            let mut client = pg_conn::Client::connect(&watch).await.unwrap();
            for _ in 0..300 {
                let rows = client
                    .simple_query("SELECT count(*) FROM pg_stat_replication WHERE state = 'backup'")
                    .await
                    .unwrap();
                if rows.first().and_then(|r| r.get(0)) == Some("1") {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    trigger.cancel();
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            trigger.cancel();
            false
        });
        let err = plan.run(&mut sink, &cancel).await.unwrap_err();
        assert!(watcher.await.unwrap(), "the server never started sending the backup");
        assert!(matches!(err, BackupError::Cancelled), "{err:?}");
        assert_eq!(sink.inner.stats().aborted.as_deref(), Some("the backup was cancelled"));
        // The server notices the closed connections: no slot, no walsender stays.
        let mut left = String::new();
        for _ in 0..100 {
            left = cluster
                .sql("SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_stat_replication)")
                .unwrap();
            if left == "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, "0", "{wal_method:?}: slots or walsenders left behind");
    }
});
