//! `pgplakar verify`: a backup directory against its backup_manifest.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Options of `pgplakar verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The backup (data) directory; its `backup_manifest` is used unless --manifest is given.
    dir: PathBuf,
    /// Another manifest file.
    #[arg(short, long)]
    manifest: Option<PathBuf>,
}

pub(crate) fn run(args: VerifyArgs) -> Result<()> {
    let manifest_path = args.manifest.clone().unwrap_or_else(|| args.dir.join("backup_manifest"));
    let manifest =
        std::fs::read(&manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?;
    match pg_backup_manifest::verify_directory(&args.dir, &manifest) {
        Ok(report) => {
            println!(
                "{}: {} files ({} bytes) match backup_manifest version {}, {} checksums verified",
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
