//! A logical backup as one plan: `/manifest.json`, then the dumps, into one sink; a dump that
//! fails part-way aborts the sink.

use std::collections::BTreeMap;

use backup_plan::{BackupError, CancellationToken, Plan, StepError};
use bytes::Bytes;
use pg_testkit::TestCluster;
use record_sink::{Flow, NullSink, Record, RecordSink, SinkError, Wants};

/// Keeps the paths in order and the body of `/manifest.json`.
#[derive(Default)]
struct Paths {
    inner: NullSink,
    paths: Vec<String>,
    manifest: Vec<u8>,
}

impl RecordSink for Paths {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        self.paths.push(record.path.to_string());
        self.inner.record(record).await
    }
    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        if self.paths.len() == 1 {
            self.manifest.extend_from_slice(&chunk);
        }
        self.inner.data(chunk).await
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

fn options(cluster: &TestCluster, pairs: &[(&str, &str)]) -> pg_logical::BackupOptions {
    let mut map: BTreeMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.insert("host".into(), "127.0.0.1".into());
    map.insert("port".into(), cluster.port().to_string());
    map.insert("username".into(), "postgres".into());
    map.insert("ssl_mode".into(), "disable".into());
    let mut o = pg_logical::BackupOptions::from_map(&map).expect("backup options");
    let cache = pg_testkit::cache_dir();
    o.connection.tool_search =
        pg_logical::ToolSearch::dirs((14..=18).map(|m| cache.join(format!("tools-{m}/bin"))));
    o
}

fn run(plan: &mut Plan, sink: &mut Paths) -> Result<backup_plan::PlanReport, BackupError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(plan.run(sink, &CancellationToken::new()))
}

fn plan(options: &pg_logical::BackupOptions) -> Plan {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Plan::logical(options, true))
        .unwrap_or_else(|e| panic!("{}", backup_plan::chain(&e)))
}

#[test]
fn metadata_then_dumps_into_one_sink() {
    let cluster = TestCluster::start(15).unwrap();
    cluster.sql("CREATE DATABASE app").unwrap();
    cluster.sql_db("app", "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g").unwrap();

    // One database: the metadata, the globals, the dump.
    let mut sink = Paths::default();
    let report = run(&mut plan(&options(&cluster, &[("database", "app")])), &mut sink).unwrap();
    assert_eq!(sink.paths, ["/manifest.json", "/globals.sql", "/app.dump"]);
    assert!(sink.inner.stats().finished);
    assert_eq!(report.logical().count(), 2);
    let json: serde_json::Value = serde_json::from_slice(&sink.manifest).unwrap();
    assert_eq!(json["connector"], "postgresql");
    assert_eq!(json["database"], "app");
    assert!(
        json["pg_dump_version"].as_str().is_some_and(|v| v.contains("15")),
        "{}",
        json["pg_dump_version"]
    );

    // The whole cluster: the metadata and one plain-SQL dump.
    let mut sink = Paths::default();
    run(&mut plan(&options(&cluster, &[])), &mut sink).unwrap();
    assert_eq!(sink.paths, ["/manifest.json", "/all.sql"]);
    assert!(sink.inner.stats().finished);
}

#[test]
fn a_dump_failing_part_way_aborts_the_sink() {
    let cluster = TestCluster::start(15).unwrap();
    cluster.sql("CREATE ROLE reader LOGIN; CREATE DATABASE app OWNER reader;").unwrap();
    cluster
        .sql_db("app", "CREATE TABLE open_t (a int); CREATE TABLE secret (a int); REVOKE ALL ON secret FROM PUBLIC; ALTER TABLE secret OWNER TO postgres; GRANT ALL ON open_t TO reader")
        .unwrap();
    let mut o = options(&cluster, &[("database", "app")]);
    o.connection.config.set_user("reader").unwrap();
    let mut sink = Paths::default();
    let err = run(&mut plan(&o), &mut sink).unwrap_err();
    assert!(matches!(&err, BackupError::Step { error: StepError::Logical(_), .. }), "{err:?}");
    let text = backup_plan::chain(&err);
    assert!(text.contains("permission denied") && text.contains("secret"), "{text}");
    let reason = sink.inner.stats().aborted.clone().expect("aborted");
    assert!(reason.contains("secret"), "{reason}");
    assert!(!sink.inner.stats().finished);
}
