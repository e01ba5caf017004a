//! Emitting `/manifest.json` through the shared record sink.

use std::time::SystemTime;

use bytes::Bytes;
use pg_config::Config;
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, Source, Wants};

use crate::{ClusterManifest, CollectError, CollectOptions, collect_for, rfc3339_utc};

/// Where the manifest lives in a backup.
pub const MANIFEST_PATH: &str = "/manifest.json";

/// Largest piece of the body handed to the sink at once.
const CHUNK: usize = 64 * 1024;

/// The manifest as the file's bytes: pretty JSON, two-space indent (like Go's
/// `json.MarshalIndent(m, "", "  ")`), ending with a newline.
pub fn manifest_json(manifest: &ClusterManifest) -> Result<Bytes, serde_json::Error> {
    let mut body = serde_json::to_vec_pretty(manifest)?;
    body.push(b'\n');
    Ok(Bytes::from(body))
}

/// Stamps `created_at` with the current time and emits the manifest as `/manifest.json`
/// (mode 0600, mtime = `created_at`). Call it first, before any other record of the backup.
pub async fn write_manifest(
    sink: &mut impl RecordSink,
    manifest: &mut ClusterManifest,
) -> Result<(), CollectError> {
    let now = SystemTime::now();
    manifest.created_at = rfc3339_utc(now);
    let body = manifest_json(manifest)?;
    let path = RecordPath::new(MANIFEST_PATH).expect("a constant, clean path");
    let record = Record {
        path,
        kind: EntryKind::File { size: Some(body.len() as u64) },
        meta: Metadata { mtime: now, ..Metadata::synthetic_file() },
    };
    if sink.record(&record).await? == Wants::Body {
        let mut at = 0;
        while at < body.len() {
            let end = (at + CHUNK).min(body.len());
            if sink.data(body.slice(at..end)).await? == Flow::Stop {
                break;
            }
            at = end;
        }
    }
    sink.end_file().await?;
    Ok(())
}

/// The first source of every backup: collects the cluster's metadata over an ordinary session
/// (see [`collect_for`]) and emits it as `/manifest.json`. What could not be collected is
/// logged as a warning and listed in the manifest's `collection_errors`; only a failure to
/// collect anything at all (the first connection, the server version) fails the source.
#[derive(Clone, Debug)]
pub struct MetadataSource {
    config: Config,
    options: CollectOptions,
}

impl MetadataSource {
    /// A source collecting from the server `config` points at (a replication setting in it is
    /// ignored: the collector needs an ordinary session).
    pub fn new(config: Config, options: CollectOptions) -> Self {
        Self { config, options }
    }
}

impl Source for MetadataSource {
    type Report = ClusterManifest;
    type Error = CollectError;

    fn describe(&self) -> String {
        format!("cluster metadata ({MANIFEST_PATH})")
    }

    async fn run<S: RecordSink>(&mut self, sink: &mut S) -> Result<ClusterManifest, CollectError> {
        let mut manifest = collect_for(&self.config, &self.options).await?;
        for e in &manifest.collection_errors {
            tracing::warn!("metadata: could not collect {}: {}", e.section, e.error);
        }
        write_manifest(sink, &mut manifest).await?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use record_sink::NullSink;

    use super::*;

    #[tokio::test]
    async fn emits_one_file_with_the_whole_body() {
        let mut manifest = ClusterManifest {
            version: 2,
            connector: "postgresql+bin".into(),
            host: "db".into(),
            port: "5432".into(),
            server_version: "16.4".into(),
            server_version_num: 160004,
            dump_format: "basebackup".into(),
            // Big enough to need several chunks.
            roles: (0..3000)
                .map(|i| crate::Role { name: format!("role{i}"), connection_limit: -1, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let mut sink = NullSink::new();
        write_manifest(&mut sink, &mut manifest).await.unwrap();
        let expected = manifest_json(&manifest).unwrap();
        assert!(expected.len() > CHUNK, "the test must cover chunking");
        let stats = sink.stats();
        assert_eq!((stats.files, stats.bytes), (1, expected.len() as u64));
        assert!(manifest.created_at.ends_with('Z') && manifest.created_at.starts_with("20"));
        let text = std::str::from_utf8(&expected).unwrap();
        assert!(text.starts_with("{\n  \"version\": 2,\n  \"created_at\": "), "{}", &text[..60]);
        assert!(text.contains("\"collection_errors\": []"));
        assert!(!text.contains("pg_basebackup_version"));
    }
}
