//! `pgplakar verify`: a backup directory against its backup_manifest, and the WAL the manifest
//! says the backup needs, record by record (like `pg_verifybackup`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pg_backup_manifest::DirOptions;

/// Options of `pgplakar verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The backup (data) directory; its `backup_manifest` is used unless --manifest is given.
    dir: PathBuf,
    /// Another manifest file.
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// Do not read the WAL of the manifest's WAL-Ranges (`pg_verifybackup --no-parse-wal`).
    #[arg(short = 'n', long)]
    no_parse_wal: bool,
    /// Where the WAL is (default: `pg_wal` in the backup directory).
    #[arg(short = 'w', long, value_name = "DIR")]
    wal_directory: Option<PathBuf>,
}

pub(crate) fn run(args: VerifyArgs) -> Result<()> {
    let manifest_path = args.manifest.clone().unwrap_or_else(|| args.dir.join("backup_manifest"));
    let manifest =
        std::fs::read(&manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let options = DirOptions {
        parse_wal: !args.no_parse_wal,
        wal_dir: args.wal_directory.clone(),
        ..DirOptions::default()
    };
    match pg_backup_manifest::verify_directory_with(&args.dir, &manifest, &options) {
        Ok(report) => {
            let wal = if args.no_parse_wal {
                "WAL not checked".to_owned()
            } else {
                format!(
                    "{} WAL record(s) of {} range(s) verified",
                    report.wal_records_verified,
                    report.wal_ranges.len()
                )
            };
            println!(
                "{}: {} files ({} bytes) match backup_manifest version {}, {} checksums verified, {wal}",
                args.dir.display(),
                report.files_verified,
                report.bytes_verified,
                report.manifest_version,
                report.checksums_verified
            );
            Ok(())
        }
        Err(mismatches) => {
            for m in &mismatches {
                println!("{m}");
            }
            bail!("{}: {} problem(s) found", args.dir.display(), mismatches.len())
        }
    }
}
