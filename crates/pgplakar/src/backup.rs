//! `pgplakar backup physical` and `pgplakar record`: a base backup through the orchestrator
//! into a data directory, tar archives, nowhere (--dry-run), or only a recording.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use backup_plan::{CancellationToken, Kind, Location, Plan, PlanReport};
use dir_sink::{DirSink, DirSinkOptions};
use pg_config::Config;
use pg_physical::{BackupOptions, Checkpoint, Compression, ManifestChecksums, RunOptions, WalMethod};
use record_sink::{NullSink, RecordSink};
use tar_sink::{TarSink, TarSinkOptions, TarTarget};

use crate::progress::{ProgressSink, Ui};
use crate::standby::{StandbySink, recovery_lines};
use crate::{Interrupted, exit};

/// What the server is asked for (shared by `backup physical` and `record`).
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The server: a libpq connection string (`host=… user=…`) or URI (`postgresql://…`,
    /// `postgres+bin://…`); PG* environment variables and ~/.pgpass apply.
    #[arg(short = 'd', long, env = "PGPLAKAR_CONNECTION", hide_env_values = true, default_value = "")]
    dbname: String,
    /// How the WAL needed for consistency is included: fetch (at the end, guarded by a
    /// temporary slot), stream (second connection), none.
    #[arg(short = 'X', long, default_value = "fetch", value_parser = ["fetch", "f", "stream", "s", "none", "n"])]
    wal_method: String,
    /// Checkpoint mode.
    #[arg(short = 'c', long, default_value = "fast", value_parser = ["fast", "spread"])]
    checkpoint: String,
    /// Maximum transfer rate of the server in kB/s (32 to 1048576; suffix M for MB/s).
    #[arg(short = 'r', long, value_parser = parse_rate)]
    max_rate: Option<u32>,
    /// Server-side compression (PostgreSQL 15+), decompressed on arrival: gzip[:LEVEL], lz4,
    /// zstd[:LEVEL] (a `server-` prefix is accepted).
    #[arg(long, value_name = "METHOD[:LEVEL]")]
    compress: Option<String>,
    /// Backup label.
    #[arg(short = 'l', long, default_value = "pg_plakar base backup")]
    label: String,
    /// Do not verify page checksums on the server.
    #[arg(long)]
    no_verify_checksums: bool,
    /// Checksum algorithm of backup_manifest: NONE, CRC32C, SHA224, SHA256, SHA384, SHA512.
    #[arg(long, default_value = "CRC32C")]
    manifest_checksums: String,
    /// A permanent replication slot for -X stream (kept after the backup: a standby made from
    /// it continues from there).
    #[arg(short = 'S', long, value_name = "NAME")]
    slot: Option<String>,
    /// Create the slot named by --slot first.
    #[arg(short = 'C', long, requires = "slot")]
    create_slot: bool,
    /// Fail when a connection sends nothing for SECS seconds (0: wait forever); stretched
    /// during the starting checkpoint (see docs/physical-backup.md).
    #[arg(long, value_name = "SECS", default_value_t = pg_physical::timeout::DEFAULT_READ_TIMEOUT.as_secs())]
    read_timeout: u64,
}

impl ServerArgs {
    fn run_options(&self, record_to: Option<PathBuf>, size_hint: Arc<AtomicU64>) -> RunOptions {
        RunOptions {
            record_to,
            size_hint: Some(size_hint),
            read_timeout: (self.read_timeout > 0).then(|| std::time::Duration::from_secs(self.read_timeout)),
            ..RunOptions::default()
        }
    }
}

/// Options of `pgplakar backup physical`.
#[derive(Debug, clap::Args)]
pub(crate) struct PhysicalArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Where the backup goes: the data directory to create (-Fp), or the directory for
    /// base.tar, <oid>.tar and backup_manifest (-Ft), `-` for a tar of the data directory on
    /// stdout. Not with --dry-run.
    #[arg(short = 'D', long, required_unless_present = "dry_run", conflicts_with = "dry_run")]
    pgdata: Option<PathBuf>,
    /// Output format: p(lain) data directory, t(ar) archives.
    #[arg(short = 'F', long, default_value = "plain", value_parser = ["p", "plain", "t", "tar"])]
    format: String,
    /// Receive, decode and verify the whole backup, write nothing (a check of the server and
    /// of this tool).
    #[arg(long)]
    dry_run: bool,
    /// Restore tablespace OID into DIR (-Fp) or point its link at DIR (-Ft), repeatable.
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OID=DIR")]
    tablespace_mapping: Vec<String>,
    /// Do not flush the written files to disk at the end.
    #[arg(short = 'N', long)]
    no_sync: bool,
    /// Keep what a failed or interrupted backup wrote (with the reason in
    /// PGPLAKAR_BACKUP_INCOMPLETE) instead of removing it: the data directory (-Fp) or the
    /// archives (-Ft, without their end-of-archive blocks).
    #[arg(short = 'n', long)]
    no_clean: bool,
    /// Make the backup a standby of the source: standby.signal and primary_conninfo (without
    /// the password; see --write-password) and primary_slot_name with -S.
    #[arg(short = 'R', long)]
    write_recovery_conf: bool,
    /// With -R, put the password in primary_conninfo (it lands in postgresql.auto.conf).
    #[arg(long, requires = "write_recovery_conf")]
    write_password: bool,
    /// Also collect the cluster's metadata and write it as `manifest.json` into DIR, before the
    /// data (what every Plakar snapshot starts with).
    #[arg(long, value_name = "DIR")]
    metadata_dir: Option<PathBuf>,
    /// Also record the raw replication stream into FILE (see `inspect` and `replay`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print the summary as JSON on stdout (not with -D -).
    #[arg(long)]
    json: bool,
}

/// Options of `pgplakar record`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The recording to write.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_rate(text: &str) -> Result<u32, String> {
    let (digits, factor) = match text.strip_suffix(['M', 'm']) {
        Some(d) => (d, 1024),
        None => (text.strip_suffix(['k', 'K']).unwrap_or(text), 1),
    };
    let n: u32 = digits.parse().map_err(|_| format!("{text:?} is not a rate in kB/s"))?;
    n.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a connection string, accepting `postgres+bin://` (the Plakar connector's scheme). A
/// physical backup is the whole cluster: a database in the URI path is an error.
pub(crate) fn parse_connection(text: &str) -> Result<Config> {
    Ok(Location::parse(text, Some(Kind::Physical))?.config)
}

fn parse_compression(spec: Option<&str>) -> Result<Compression> {
    let Some(spec) = spec else { return Ok(Compression::None) };
    let spec = spec.strip_prefix("server-").unwrap_or(spec);
    if spec == "none" {
        return Ok(Compression::None);
    }
    if spec.starts_with("client-") {
        bail!(
            "client-side compression is not offered: the backup is stored uncompressed (use server-side --compress)"
        );
    }
    let (method, level) = spec.split_once(':').map_or((spec, None), |(m, l)| (m, Some(l)));
    let level_of = |l: Option<&str>| -> Result<Option<i64>> {
        l.map(|l| l.trim_start_matches("level=").parse().with_context(|| format!("bad level in {spec:?}")))
            .transpose()
    };
    Ok(match method {
        "gzip" => Compression::Gzip(level_of(level)?.map(|l| l.clamp(0, 255) as u8)),
        "lz4" if level.is_none() => Compression::Lz4,
        "zstd" => Compression::Zstd(level_of(level)?.map(|l| l.clamp(-128, 127) as i8)),
        _ => bail!("unknown compression {spec:?}: gzip[:LEVEL], lz4 or zstd[:LEVEL]"),
    })
}

fn parse_options(args: &ServerArgs) -> Result<BackupOptions> {
    let manifest_checksums = ManifestChecksums::from_name(&args.manifest_checksums.to_uppercase())
        .with_context(|| format!("unknown manifest checksum algorithm {:?}", args.manifest_checksums))?;
    let options = BackupOptions {
        label: args.label.clone(),
        checkpoint: if args.checkpoint == "spread" { Checkpoint::Spread } else { Checkpoint::Fast },
        max_rate: args.max_rate,
        wal_method: match args.wal_method.as_str() {
            "stream" | "s" => WalMethod::Stream,
            "none" | "n" => WalMethod::None,
            _ => WalMethod::Fetch,
        },
        compression: parse_compression(args.compress.as_deref())?,
        verify_checksums: !args.no_verify_checksums,
        manifest_checksums,
        slot: args.slot.clone(),
        create_slot: args.create_slot,
    };
    // What needs no server is refused before connecting.
    options.check()?;
    Ok(options)
}

fn parse_mapping(items: &[String]) -> Result<BTreeMap<u32, PathBuf>> {
    items
        .iter()
        .map(|item| {
            let (oid, dir) = item.split_once('=').with_context(|| format!("{item:?}: expected OID=DIR"))?;
            let oid = oid.parse().with_context(|| format!("{item:?}: {oid:?} is not a tablespace OID"))?;
            Ok((oid, PathBuf::from(dir)))
        })
        .collect()
}

/// What a backup did, for the summary.
pub(crate) struct Outcome {
    pub(crate) report: PlanReport,
    pub(crate) elapsed: std::time::Duration,
}

/// Runs `plan` into `sink` (behind the progress display and, with `standby`, the `-R`
/// wrapper), cancellable with Ctrl-C.
pub(crate) fn run_plan<S: RecordSink>(
    plan: &mut Plan,
    sink: &mut S,
    ui: &Ui,
    what: &str,
    size_hint: Option<Arc<AtomicU64>>,
    standby: Option<String>,
) -> Result<Outcome> {
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let progress = ui.progress(what, size_hint);
    let (result, interrupted) = crate::run_cancellable(&cancel, async {
        match standby {
            Some(lines) => {
                let mut standby = StandbySink::new(sink, lines);
                let mut shown = ProgressSink::new(&mut standby, progress);
                Ok(plan.run(&mut shown, &cancel).await?)
            }
            None => {
                let mut shown = ProgressSink::new(sink, progress);
                Ok(plan.run(&mut shown, &cancel).await?)
            }
        }
    })?;
    if let Some(signal) = interrupted.signal() {
        return Err(Interrupted(signal).into());
    }
    Ok(Outcome { report: result?, elapsed: started.elapsed() })
}

pub(crate) fn run_physical(args: PhysicalArgs, ui: &Ui) -> Result<u8> {
    let config = parse_connection(&args.server.dbname)?;
    let mut options = parse_options(&args.server)?;
    let tar = matches!(args.format.as_str(), "t" | "tar");
    let to_stdout = args.pgdata.as_deref() == Some(Path::new("-"));
    if to_stdout && !tar {
        bail!("-D - writes a tar stream: add -Ft");
    }
    if to_stdout && args.json {
        bail!("--json prints on stdout, which -D - uses for the tar stream");
    }
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write a tar stream to a terminal: redirect stdout (> base.tar) or pipe it");
    }
    if args.write_recovery_conf && args.dry_run {
        bail!("-R writes into the backup; --dry-run writes nothing");
    }
    let mapping = parse_mapping(&args.tablespace_mapping)?;
    let standby = if args.write_recovery_conf {
        Some(recovery_lines(&config, args.server.slot.as_deref(), args.write_password)?)
    } else {
        None
    };
    if args.dry_run {
        // Count and verify only.
        options.label = format!("{} (dry run)", options.label);
    }
    let size_hint = Arc::new(AtomicU64::new(0));
    let run = args.server.run_options(args.record.clone(), size_hint.clone());
    let mut plan = Plan::physical(config, options, run, args.metadata_dir.is_some())?;
    let hint = Some(size_hint);
    let (outcome, target) = if args.dry_run {
        let mut sink = NullSink::new();
        (run_plan(&mut plan, &mut sink, ui, "dry run", hint, None)?, "nowhere (dry run)".to_owned())
    } else {
        let pgdata = args.pgdata.clone().expect("clap: -D unless --dry-run");
        if tar {
            let target = if to_stdout {
                let fd = std::io::stdout().as_fd().try_clone_to_owned().context("duplicating stdout")?;
                TarTarget::Stream(Box::new(std::fs::File::from(fd)))
            } else {
                TarTarget::Directory(pgdata.clone())
            };
            let mut o = TarSinkOptions::new(target);
            o.tablespace_mapping = mapping;
            o.extra_dir = args.metadata_dir.clone();
            o.sync = !args.no_sync;
            o.keep_on_failure = args.no_clean;
            let mut sink = TarSink::create(o)?;
            let shown =
                if to_stdout { "stdout (tar)".to_owned() } else { format!("{} (tar)", pgdata.display()) };
            (run_plan(&mut plan, &mut sink, ui, "backup", hint, standby)?, shown)
        } else {
            let mut o = DirSinkOptions::new(&pgdata);
            o.tablespace_mapping = mapping;
            o.sync = !args.no_sync;
            o.extra_dir = args.metadata_dir.clone();
            o.keep_on_failure = args.no_clean;
            let mut sink = DirSink::create(o)?;
            (run_plan(&mut plan, &mut sink, ui, "backup", hint, standby)?, pgdata.display().to_string())
        }
    };
    print_summary(&outcome, &target, args.json, to_stdout)?;
    Ok(exit::OK)
}

pub(crate) fn run_record(args: RecordArgs, ui: &Ui) -> Result<u8> {
    let config = parse_connection(&args.server.dbname)?;
    let options = parse_options(&args.server)?;
    if args.output.exists() {
        bail!("{} exists: give a new file", args.output.display());
    }
    let size_hint = Arc::new(AtomicU64::new(0));
    let run = args.server.run_options(Some(args.output.clone()), size_hint.clone());
    let mut plan = Plan::physical(config, options, run, false)?;
    let mut sink = NullSink::new();
    let result = run_plan(&mut plan, &mut sink, ui, "recording", Some(size_hint), None);
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            // A recording of a failed backup is still what happened; say where it is.
            if args.output.exists() {
                tracing::warn!("the partial recording is kept in {} for inspection", args.output.display());
            }
            return Err(e);
        }
    };
    print_summary(&outcome, &format!("recording {}", args.output.display()), args.json, false)?;
    Ok(exit::OK)
}

fn print_summary(outcome: &Outcome, target: &str, json: bool, quiet_stdout: bool) -> Result<()> {
    let r = outcome.report.physical().context("the plan had no physical step")?;
    let secs = outcome.elapsed.as_secs_f64();
    let rate = r.summary.bytes as f64 / 1e6 / secs.max(1e-9);
    if json {
        let v = serde_json::json!({
            "kind": "physical",
            "target": target,
            "server_version": r.server.server_version,
            "system_identifier": r.server.system_identifier,
            "timeline": r.server.timeline,
            "start_lsn": r.summary.start.map(|(lsn, _)| lsn.to_string()),
            "end_lsn": r.summary.end.map(|(lsn, _)| lsn.to_string()),
            "files": r.summary.files,
            "bytes": r.summary.bytes,
            "verified_files": r.summary.verified_files,
            "streamed_wal_segments": r.streamed_wal_segments,
            "tablespaces": r.summary.tablespaces.len().saturating_sub(1),
            "warnings": r.summary.warnings,
            "elapsed_s": secs,
            "mb_per_s": rate,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let line = format!(
            "backup of PostgreSQL {} (system {}) into {target}: {} files, {} bytes, {} verified against backup_manifest, in {:.1?} ({rate:.0} MB/s)",
            r.server.server_version,
            r.server.system_identifier,
            r.summary.files,
            r.summary.bytes,
            r.summary.verified_files,
            outcome.elapsed
        );
        if quiet_stdout {
            tracing::info!("{line}");
        } else {
            println!("{line}");
        }
    }
    for w in &r.summary.warnings {
        tracing::warn!("server warning: {w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_bin_uris() {
        let c = parse_connection("postgres+bin://replicator:secret@db.example.com:5433").unwrap();
        assert_eq!(c.user(), Some("replicator"));
        let err = parse_connection("postgres+bin://u@h/mydb").unwrap_err().to_string();
        assert!(err.contains("a physical backup is the whole cluster"), "{err}");
        assert!(parse_connection("host=/tmp port=5432").is_ok());
    }

    #[test]
    fn tablespace_mappings() {
        let m = parse_mapping(&["16384=/srv/ts".into()]).unwrap();
        assert_eq!(m[&16384], PathBuf::from("/srv/ts"));
        assert!(parse_mapping(&["x=/srv".into()]).is_err());
        assert!(parse_mapping(&["16384".into()]).is_err());
    }

    #[test]
    fn rates_and_compression() {
        assert_eq!(parse_rate("100"), Ok(100));
        assert_eq!(parse_rate("2M"), Ok(2048));
        assert!(parse_rate("x").is_err());
        // Overflow is an error, never a wrapped value (issue 13).
        assert!(parse_rate("4194304M").unwrap_err().contains("too large"));
        assert!(parse_rate("4294967296").is_err());
        assert_eq!(parse_compression(Some("server-zstd:3")).unwrap(), Compression::Zstd(Some(3)));
        assert_eq!(parse_compression(Some("gzip")).unwrap(), Compression::Gzip(None));
        assert!(parse_compression(Some("client-gzip")).is_err());
    }
}
