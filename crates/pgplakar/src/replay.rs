//! `pgplakar replay`: decode a recorded replication stream offline — a summary, or (with -D)
//! the data directory it holds, through the same orchestrator and directory sink as a live
//! backup (`Plan::replay` into a `DirSink`), every file checked against the stream's own
//! backup_manifest.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backup_plan::Plan;
use dir_sink::{DirSink, DirSinkOptions};
use pg_basebackup::summary::Chunking;
use pg_recording::replay;
use record_sink::NullSink;

use crate::backup::run_plan;
use crate::exit;
use crate::progress::Ui;

/// Options of `pgplakar replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// A recording made with `pgplakar record` or `backup physical --record`.
    recording: PathBuf,
    /// Write the data directory the recording holds into DIR (absent or empty).
    #[arg(short = 'D', long, value_name = "DIR")]
    pgdata: Option<PathBuf>,
    /// Do not flush the written files to disk at the end (-D).
    #[arg(short = 'N', long)]
    no_sync: bool,
    /// List every entry with its size and SHA-256.
    #[arg(long)]
    entries: bool,
    /// Feed the decoder in pieces of this many bytes (default: as recorded).
    #[arg(long)]
    chunk: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ReplayArgs, ui: &Ui) -> Result<u8> {
    let file = std::fs::File::open(&args.recording)
        .with_context(|| format!("cannot open {}", args.recording.display()))?;
    let chunking = match args.chunk {
        Some(n) if n > 0 => Chunking::Fixed(n),
        Some(_) => bail!("--chunk must be at least 1"),
        None => Chunking::AsRecorded,
    };
    let summary = replay(std::io::BufReader::new(file), chunking)?;
    let human = !args.json;
    if human {
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
    }
    match (&summary.error, summary.done) {
        (None, true) => {}
        (Some(e), _) => bail!("the stream does not decode to a complete backup: {e}"),
        (None, false) => bail!("the stream ends before the backup completed"),
    }
    // Decoding is not enough: the records a backup would get are checked against the
    // backup_manifest the stream carries, as during the live backup.
    let mut plan = Plan::replay(&args.recording);
    let outcome = match &args.pgdata {
        Some(dir) => {
            let mut o = DirSinkOptions::new(dir);
            o.sync = !args.no_sync;
            let mut sink = DirSink::create(o)?;
            run_plan(&mut plan, &mut sink, ui, "replay", None, None)
        }
        None => run_plan(&mut plan, &mut NullSink::new(), ui, "replay", None, None),
    }
    .context("verifying the recorded backup")?;
    let verified = outcome.report.replay().map_or(0, |s| s.verified_files);
    if args.json {
        let v = serde_json::json!({
            "recording": args.recording,
            "complete": true,
            "start_lsn": summary.start.map(|(l, _)| l.to_string()),
            "end_lsn": summary.end.map(|(l, _)| l.to_string()),
            "archives": summary.archives.iter().map(|a| serde_json::json!({
                "name": a.name, "entries": a.entries.len(), "bytes": a.entries.iter().map(|e| e.size).sum::<u64>(),
            })).collect::<Vec<_>>(),
            "manifest_bytes": summary.manifest.as_ref().map(|(len, _)| *len),
            "verified_files": verified,
            "written_to": args.pgdata,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    if summary.manifest.is_some() {
        println!("{verified} files verified against backup_manifest");
    }
    if let Some(dir) = &args.pgdata {
        println!("data directory written to {}", dir.display());
    }
    println!("complete");
    Ok(exit::OK)
}
