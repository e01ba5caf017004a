//! `pgplakar backup`: a physical backup into a data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backup_plan::{CancellationToken, Kind, Location, Plan};
use dir_sink::{DirSink, DirSinkOptions};
use pg_config::Config;
use pg_physical::{BackupOptions, Checkpoint, Compression, ManifestChecksums, RunOptions, WalMethod};

/// Options of `pgplakar backup`.
#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// The server: a libpq connection string (`host=… user=…`) or URI (`postgresql://…`,
    /// `postgres+bin://…`); PG* environment variables and ~/.pgpass apply.
    #[arg(short = 'd', long, env = "PGPLAKAR_CONNECTION", default_value = "")]
    dbname: String,
    /// The data directory to create (absent or empty).
    #[arg(short = 'D', long)]
    pgdata: PathBuf,
    /// How the WAL needed for consistency is included: fetch (temporary slot guard), stream
    /// (second connection), none.
    #[arg(short = 'X', long, default_value = "fetch", value_parser = ["fetch", "stream", "none"])]
    wal_method: String,
    /// Checkpoint mode.
    #[arg(short = 'c', long, default_value = "fast", value_parser = ["fast", "spread"])]
    checkpoint: String,
    /// Maximum transfer rate in kB/s (32 to 1048576).
    #[arg(short = 'r', long)]
    max_rate: Option<u32>,
    /// Server-side compression (PostgreSQL 15+), decompressed on arrival: gzip[:LEVEL], lz4,
    /// zstd[:LEVEL].
    #[arg(long)]
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
    /// Restore tablespace OID into DIR instead of `<pgdata>_tablespaces/<oid>` (repeatable).
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OID=DIR")]
    tablespace_mapping: Vec<String>,
    /// Do not flush the written files to disk at the end.
    #[arg(long)]
    no_sync: bool,
    /// Also collect the cluster's metadata and write it as `manifest.json` into DIR, before the
    /// data (what every Plakar snapshot starts with).
    #[arg(long, value_name = "DIR")]
    metadata_dir: Option<PathBuf>,
    /// Record the raw replication stream into FILE (replay it with `pgplakar replay`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

/// Parses a connection string, accepting `postgres+bin://` (the Plakar connector's scheme). A
/// physical backup is the whole cluster: a database in the URI path is an error.
pub(crate) fn parse_connection(text: &str) -> Result<Config> {
    Ok(Location::parse(text, Some(Kind::Physical))?.config)
}

fn parse_options(args: &BackupArgs) -> Result<BackupOptions> {
    let compression = match args.compress.as_deref() {
        None | Some("none") => Compression::None,
        Some(spec) => {
            let (method, level) = spec.split_once(':').map_or((spec, None), |(m, l)| (m, Some(l)));
            let level_of = |l: Option<&str>| -> Result<Option<i64>> {
                l.map(|l| {
                    l.trim_start_matches("level=").parse().with_context(|| format!("bad level in {spec:?}"))
                })
                .transpose()
            };
            match method {
                "gzip" => Compression::Gzip(level_of(level)?.map(|l| l.clamp(0, 255) as u8)),
                "lz4" if level.is_none() => Compression::Lz4,
                "zstd" => Compression::Zstd(level_of(level)?.map(|l| l.clamp(-128, 127) as i8)),
                _ => bail!("unknown compression {spec:?}: gzip[:LEVEL], lz4 or zstd[:LEVEL]"),
            }
        }
    };
    let manifest_checksums = ManifestChecksums::from_name(&args.manifest_checksums)
        .with_context(|| format!("unknown manifest checksum algorithm {:?}", args.manifest_checksums))?;
    Ok(BackupOptions {
        label: args.label.clone(),
        checkpoint: if args.checkpoint == "spread" { Checkpoint::Spread } else { Checkpoint::Fast },
        max_rate: args.max_rate,
        wal_method: match args.wal_method.as_str() {
            "stream" => WalMethod::Stream,
            "none" => WalMethod::None,
            _ => WalMethod::Fetch,
        },
        compression,
        verify_checksums: !args.no_verify_checksums,
        manifest_checksums,
    })
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

pub(crate) fn run(args: BackupArgs) -> Result<()> {
    let config = parse_connection(&args.dbname)?;
    let options = parse_options(&args)?;
    let mut sink_options = DirSinkOptions::new(&args.pgdata);
    sink_options.tablespace_mapping = parse_mapping(&args.tablespace_mapping)?;
    sink_options.sync = !args.no_sync;
    sink_options.extra_dir = args.metadata_dir.clone();
    let run = RunOptions { record_to: args.record.clone(), spool_dir: None };
    let mut plan = Plan::physical(config, options, run, args.metadata_dir.is_some())?;
    let mut sink = DirSink::create(sink_options)?;
    let report = crate::runtime()?.block_on(plan.run(&mut sink, &CancellationToken::new()))?;
    let report = report.physical().context("the plan had no physical step")?;
    println!(
        "backup of PostgreSQL {} (system {}) in {}: {} files, {} bytes, {} verified against backup_manifest, {:.1?}",
        report.server.server_version,
        report.server.system_identifier,
        args.pgdata.display(),
        report.summary.files,
        report.summary.bytes,
        report.summary.verified_files,
        report.elapsed
    );
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
}
