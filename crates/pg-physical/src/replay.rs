//! Offline replay: a recorded `BASE_BACKUP` session (`pg_recording`) through the very pipeline a
//! live backup uses — decoder, records, and verification of every file against the
//! `backup_manifest` the stream carries — into any sink. No server involved: this is how the
//! committed fixtures test the path from bytes to records, and how a recording is turned back
//! into a data directory.

use std::io::Read;
use std::path::PathBuf;

use pg_backup_manifest::ChecksumAlgorithm;
use pg_basebackup::{Decoder, Event};
use pg_recording::{RecordingMeta, ResponseReader};
use record_sink::{RecordSink, Source};

use crate::PhysicalError;
use crate::pipeline::{BackupSummary, Pipeline};
use crate::verify::ManifestCheck;

/// A recording replayed as a [`Source`] (see [`replay`]).
#[derive(Clone, Debug)]
pub struct ReplaySource {
    /// The recording (plain or gzip).
    pub path: PathBuf,
}

impl Source for ReplaySource {
    type Report = BackupSummary;
    type Error = PhysicalError;

    fn describe(&self) -> String {
        format!("replay of {}", self.path.display())
    }

    async fn run<S: RecordSink>(&mut self, sink: &mut S) -> Result<BackupSummary, PhysicalError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| PhysicalError::Recording(format!("{}: {e}", self.path.display())))?;
        replay(std::io::BufReader::new(file), sink).await
    }
}

/// The checksum algorithm the recorded command asked the manifest for (`MANIFEST_CHECKSUMS
/// 'SHA256'`), the server's default (CRC32C) when it did not say; `None` without a manifest.
fn manifest_algorithm(meta: &RecordingMeta) -> Result<Option<ChecksumAlgorithm>, PhysicalError> {
    if !meta.manifest {
        return Ok(None);
    }
    let Some(at) = meta.command.find("MANIFEST_CHECKSUMS") else {
        return Ok(Some(ChecksumAlgorithm::Crc32c));
    };
    let name: String = meta.command[at + "MANIFEST_CHECKSUMS".len()..]
        .trim_start()
        .trim_start_matches('\'')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    ChecksumAlgorithm::from_name(&name).map(Some).ok_or_else(|| {
        PhysicalError::Recording(format!("the recorded command asks for an unknown checksum {name:?}"))
    })
}

/// Replays the `BASE_BACKUP` response of a recording into `sink`: the same records as the live
/// backup produced (`/data/…`, `/tablespaces/<oid>/…`), every file checked against the
/// recording's own `backup_manifest` (13+), and an error for a recording that ends before the
/// server's final completion. Like every source, it neither finishes nor aborts the sink.
pub async fn replay<R: Read, S: RecordSink>(
    recording: R,
    sink: &mut S,
) -> Result<BackupSummary, PhysicalError> {
    let recording_error = |e: pg_recording::RecordingError| PhysicalError::Recording(e.to_string());
    let mut reader = ResponseReader::new(recording).map_err(recording_error)?;
    let meta = reader.meta().clone();
    let mut decoder = Decoder::new(meta.decoder_options())?;
    // The recording does not say the source's data_directory_mode: 0700, what initdb gives.
    let mut pipeline = Pipeline::new(0o700, ManifestCheck::new(manifest_algorithm(&meta)?));
    while let Some(chunk) = reader.next_chunk().map_err(recording_error)? {
        decoder.feed_bytes(&chunk);
        while let Some(event) = decoder.poll_event().map_err(|e| match e {
            pg_basebackup::DecodeError::Server(error) => PhysicalError::Server {
                error,
                at: format!("after {} bytes of the recorded response", decoder.bytes_consumed()),
                warnings: pipeline.summary().warnings.clone(),
            },
            e => e.into(),
        })? {
            if let Event::Done = event {
                decoder.finish()?;
                return Ok(pipeline.summary().clone());
            }
            pipeline.handle(event, sink).await?;
        }
    }
    decoder.finish()?;
    Err(PhysicalError::Recording(format!(
        "the recording ends before the server's final completion, {}",
        pipeline.position()
    )))
}
