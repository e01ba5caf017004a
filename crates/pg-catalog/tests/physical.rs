//! The physical path as a binary drives it: collect over a normal session (from the backup's
//! replication configuration), `write_manifest` into the sink, then `pg_physical::backup` into
//! the same sink. `/manifest.json` must be the first record, followed by the base backup.

mod common;

use bytes::Bytes;
use pg_catalog::{CollectOptions, MANIFEST_PATH, collect_for, write_manifest};
use pg_physical::{BackupOptions, RunOptions};
use record_sink::{NullSink, Record, RecordSink, SinkError, Wants};

/// A sink that keeps the order of the records and the manifest's body; a [`NullSink`] behind it
/// checks the record protocol and counts.
#[derive(Default)]
struct Recording {
    inner: NullSink,
    paths: Vec<String>,
    manifest: Vec<u8>,
}

impl RecordSink for Recording {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        self.paths.push(record.path.to_string());
        self.inner.record(record).await
    }

    async fn data(&mut self, chunk: Bytes) -> Result<(), SinkError> {
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

pg_testkit::per_major!(async fn manifest_then_base_backup_into_one_sink(major) {
    let cluster = pg_testkit::TestCluster::start(major).unwrap();
    cluster.sql("CREATE DATABASE app").unwrap();
    cluster.sql_db("app", "CREATE TABLE t (a int PRIMARY KEY)").unwrap();
    // The physical backup's configuration asks for a replication session; the collector must
    // still get a normal one (a walsender cannot run the catalog queries).
    let mut config = common::config(&cluster, "postgres");
    config.set_replication(pg_config::Replication::Physical);

    let options = CollectOptions::physical("127.0.0.1", cluster.port().to_string());
    let mut manifest = collect_for(&config, &options).await.expect("collect over a normal session");
    assert_eq!(manifest.collection_errors, vec![]);
    let mut sink = Recording::default();
    write_manifest(&mut sink, &mut manifest).await.expect("write_manifest");
    let report = pg_physical::backup(&config, &BackupOptions::default(), &RunOptions::default(), &mut sink)
        .await
        .unwrap_or_else(|e| panic!("backup failed: {e}\n{}", cluster.log_contents()));

    assert_eq!(sink.paths[0], MANIFEST_PATH);
    assert_eq!(sink.paths.iter().filter(|p| p.as_str() == MANIFEST_PATH).count(), 1);
    assert!(sink.paths.len() > 100, "{} records", sink.paths.len());
    assert!(sink.paths[1..].iter().all(|p| p.starts_with("/data")), "{:?}", &sink.paths[..10]);
    for file in ["/data/PG_VERSION", "/data/global/pg_control", "/data/backup_label"] {
        assert!(sink.paths.iter().any(|p| p == file), "{file} missing");
    }
    let stats = sink.inner.stats();
    assert!(stats.finished && stats.aborted.is_none(), "{stats:?}");

    // The record's body is the manifest as written, and describes the cluster just backed up.
    assert_eq!(sink.manifest, pg_catalog::manifest_json(&manifest).unwrap().to_vec());
    let json: serde_json::Value = serde_json::from_slice(&sink.manifest).expect("JSON");
    assert_eq!(json["version"], 2);
    assert_eq!(json["connector"], "postgresql+bin");
    assert_eq!(json["cluster_system_identifier"].as_str(), Some(report.server.system_identifier.to_string().as_str()));
    assert_eq!(json["server_version"].as_str(), Some(report.server.server_version.as_str()));
    assert_eq!(json["server_version_num"].as_i64().map(|n| n / 10000), Some(i64::from(major)));
    let app = json["databases"].as_array().unwrap().iter().find(|d| d["name"] == "app").expect("database app");
    assert_eq!(app["relations"][0]["name"], "t");
});
