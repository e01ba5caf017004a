//! `pgplakar replay`: decode a recorded replication stream offline.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backup_plan::{CancellationToken, Plan};
use pg_basebackup::summary::Chunking;
use pg_recording::replay;

/// Options of `pgplakar replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// A recording made with `pgplakar backup --record`.
    recording: PathBuf,
    /// List every entry with its size and SHA-256.
    #[arg(long)]
    entries: bool,
    /// Feed the decoder in pieces of this many bytes (default: as recorded).
    #[arg(long)]
    chunk: Option<usize>,
}

pub(crate) fn run(args: ReplayArgs) -> Result<()> {
    let file = std::fs::File::open(&args.recording)
        .with_context(|| format!("cannot open {}", args.recording.display()))?;
    let chunking = match args.chunk {
        Some(n) if n > 0 => Chunking::Fixed(n),
        Some(_) => bail!("--chunk must be at least 1"),
        None => Chunking::AsRecorded,
    };
    let summary = replay(std::io::BufReader::new(file), chunking)?;
    if let Some((lsn, tli)) = summary.start {
        println!("start: {lsn} on timeline {tli}");
    }
    for archive in &summary.archives {
        let bytes: u64 = archive.entries.iter().map(|e| e.size).sum();
        println!("archive {}: {} entries, {} bytes", archive.name, archive.entries.len(), bytes);
        if args.entries {
            for e in &archive.entries {
                println!("  {:>12}  {}  {}", e.size, e.sha256, e.path);
            }
        }
    }
    if let Some((len, sha)) = &summary.manifest {
        println!("backup_manifest: {len} bytes, sha256 {sha}");
    }
    for notice in &summary.notices {
        println!("notice: {notice}");
    }
    if let Some((lsn, tli)) = summary.end {
        println!("end: {lsn} on timeline {tli}");
    }
    match (&summary.error, summary.done) {
        (None, true) => {}
        (Some(e), _) => bail!("the stream does not decode to a complete backup: {e}"),
        (None, false) => bail!("the stream ends before the backup completed"),
    }
    // Decoding is not enough: the records a backup would get are checked against the
    // backup_manifest the stream carries, as during the live backup.
    let mut sink = record_sink::NullSink::new();
    let report = crate::runtime()?
        .block_on(Plan::replay(&args.recording).run(&mut sink, &CancellationToken::new()))
        .context("verifying the recorded backup")?;
    let verified = report.replay().map_or(0, |s| s.verified_files);
    if summary.manifest.is_some() {
        println!("{verified} files verified against backup_manifest");
    }
    println!("complete");
    Ok(())
}
