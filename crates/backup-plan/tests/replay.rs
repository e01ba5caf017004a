//! Server-free pipeline tests: every committed recording (`fixtures/pg12…18.pgrec.gz`) replayed
//! through the full path from bytes to records — decoder, pipeline, verification against the
//! recording's own `backup_manifest`, orchestrator — into the null sink and the directory sink;
//! a truncated or corrupted recording fails and aborts the sink.

use std::io::Read;
use std::path::{Path, PathBuf};

use backup_plan::{BackupError, CancellationToken, Plan, StepError};
use dir_sink::{DirSink, DirSinkOptions};
use pg_physical::{BackupSummary, PhysicalError};
use record_sink::NullSink;

fn fixture(major: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/pg{major}.pgrec.gz"))
}

/// The decompressed recording, for damaging it.
fn plain(major: u32) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(fixture(major)).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn replay_into<S: record_sink::RecordSink>(
    recording: &Path,
    sink: &mut S,
) -> Result<BackupSummary, BackupError> {
    block_on(async {
        let report = Plan::replay(recording).run(sink, &CancellationToken::new()).await?;
        Ok(report.replay().expect("a replay report").clone())
    })
}

/// What the decoder alone sees in the recording: regular files and their bytes.
fn decoded(major: u32) -> (u64, u64, u64) {
    let file = std::fs::File::open(fixture(major)).unwrap();
    let s = pg_recording::replay(file, pg_basebackup::summary::Chunking::AsRecorded).unwrap();
    assert!(s.done && s.error.is_none(), "pg{major}: {:?}", s.error);
    let files: Vec<_> =
        s.archives.iter().flat_map(|a| &a.entries).filter(|e| e.kind == pg_tar::EntryKind::File).collect();
    let wal = files.iter().filter(|e| e.path.starts_with("pg_wal/0")).count() as u64;
    (files.len() as u64, files.iter().map(|e| e.size).sum(), wal)
}

#[test]
fn every_recording_replays_into_the_null_sink() {
    for major in 12..=18 {
        let (files, bytes, wal) = decoded(major);
        let mut sink = NullSink::new();
        let summary = replay_into(&fixture(major), &mut sink).unwrap_or_else(|e| panic!("pg{major}: {e:?}"));
        assert_eq!((summary.files, summary.bytes), (files, bytes), "pg{major}");
        let stats = sink.stats();
        assert!(stats.finished && stats.aborted.is_none(), "pg{major}: {stats:?}");
        // The sink also got backup_manifest (13+), a record the tar did not hold.
        let manifest = u64::from(major >= 13);
        assert_eq!(stats.files, files + manifest, "pg{major}");
        assert_eq!(stats.bytes > bytes, major >= 13, "pg{major}: {} vs {bytes}", stats.bytes);
        // Every file but the WAL segments is checked against the manifest (13+).
        let expected_verified = if major >= 13 { files - wal } else { 0 };
        assert_eq!(summary.verified_files, expected_verified, "pg{major}");
        assert!(summary.start.is_some() && summary.end.is_some(), "pg{major}");
    }
}

#[test]
fn every_recording_replays_into_a_directory_that_verifies() {
    for major in 12..=18 {
        let scratch = tempfile::tempdir().unwrap();
        let data = scratch.path().join("pgdata");
        let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
        let summary = replay_into(&fixture(major), &mut sink).unwrap_or_else(|e| panic!("pg{major}: {e:?}"));
        assert_eq!(std::fs::read_to_string(data.join("PG_VERSION")).unwrap().trim(), major.to_string());
        assert!(summary.files > 900, "pg{major}: {summary:?}");
        if major >= 13 {
            let manifest = std::fs::read(data.join("backup_manifest")).unwrap();
            let report = pg_backup_manifest::verify_directory(&data, &manifest)
                .unwrap_or_else(|m| panic!("pg{major}: the replayed directory does not verify: {m:?}"));
            assert!(report.files_verified > 900, "pg{major}: {report:?}");
        }
    }
}

/// Writes `bytes` as a recording file and replays it into a null sink.
fn replay_bytes(bytes: &[u8]) -> (Result<BackupSummary, BackupError>, NullSink) {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("damaged.pgrec");
    std::fs::write(&path, bytes).unwrap();
    let mut sink = NullSink::new();
    (replay_into(&path, &mut sink), sink)
}

#[test]
fn a_truncated_recording_fails_and_aborts() {
    for major in 12..=18 {
        let full = plain(major);
        for keep in [full.len() / 3, full.len() - 100, full.len() - 1] {
            let (result, sink) = replay_bytes(&full[..keep]);
            let err = result.expect_err("a truncated recording must not replay");
            assert!(
                matches!(err, BackupError::Step { error: StepError::Physical(_), .. }),
                "pg{major}: {err:?}"
            );
            let reason = sink.stats().aborted.clone().expect("the sink was aborted");
            assert!(reason.starts_with("replay of "), "pg{major}: {reason}");
            assert!(!sink.stats().finished);
        }
    }
}

#[test]
fn a_flipped_content_byte_is_caught_by_the_manifest() {
    // PostgreSQL 12 sends no manifest: only 13+ can catch a changed byte of a file's content.
    for major in 13..=18 {
        let mut bytes = plain(major);
        // pg_class's first relation file is well over 8 kB: flip a byte inside its content.
        let name = b"global/1262\0";
        let at = bytes.windows(name.len()).position(|w| w == name).expect("a tar header for global/1262");
        // The name starts the 512-byte tar header; the content follows it.
        bytes[at + 512 + 100] ^= 0x01;
        let (result, sink) = replay_bytes(&bytes);
        let err = result.expect_err("a changed byte must not replay");
        let BackupError::Step { error: StepError::Physical(e), .. } = &err else {
            panic!("pg{major}: {err:?}")
        };
        assert!(matches!(**e, PhysicalError::Manifest(_)), "pg{major}: {e:?}");
        assert!(backup_plan::chain(&err).contains("global/1262"), "pg{major}: {}", backup_plan::chain(&err));
        assert!(sink.stats().aborted.is_some());
    }
}
