//! `pgplakar verify`: a backup against its backup_manifest — a data directory, a directory of
//! tar archives (`base.tar`, `<oid>.tar`, `backup_manifest`, as `backup physical -Ft` and
//! `pg_basebackup -Ft` write them), or a single tar with the manifest inside (`-D -`).
//!
//! Like `pg_verifybackup`: every file of the manifest present with its size and checksum,
//! nothing extra; `pg_wal`, `postgresql.auto.conf` and the signal files are not compared (the
//! same ignore list). For a data directory the WAL of the manifest's WAL-Ranges is also read
//! record by record (unless `-n`); tar backups are checked without parsing their WAL.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use pg_backup_manifest::{
    Checksum, FileHasher, IgnoreList, Manifest, ManifestBuffer, Mismatch, Report, Verifier,
};
use pg_tar::{EntryKind, TarEvent, TarReader};

use crate::exit;

/// Options of `pgplakar verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The backup: a data directory, a directory of tar archives, or one tar file.
    path: PathBuf,
    /// Another manifest file (default: the backup's own `backup_manifest`).
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// Do not read the WAL of the manifest's WAL-Ranges (`pg_verifybackup --no-parse-wal`).
    #[arg(short = 'n', long)]
    no_parse_wal: bool,
    /// Where the WAL is (default: `pg_wal` in the backup directory).
    #[arg(short = 'w', long, value_name = "DIR")]
    wal_directory: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: VerifyArgs) -> Result<u8> {
    let (format, result) = if args.path.is_dir() && !args.path.join("base.tar").exists() {
        ("directory", verify_dir(&args)?)
    } else if args.path.is_dir() {
        ("tar", verify_tar_dir(&args)?)
    } else {
        ("tar stream", verify_tar_file(&args)?)
    };
    let shown = args.path.display();
    match &result {
        Ok(report) if args.json => {
            println!("{}", serde_json::to_string_pretty(&json(&args.path, format, &result))?)
        }
        Ok(report) => {
            let wal = if format != "directory" || args.no_parse_wal {
                "WAL not checked".to_owned()
            } else {
                format!(
                    "{} WAL record(s) of {} range(s) verified",
                    report.wal_records_verified,
                    report.wal_ranges.len()
                )
            };
            println!(
                "{shown} ({format}): {} files ({} bytes) match backup_manifest version {}, {} checksums verified, {wal}",
                report.files_verified,
                report.bytes_verified,
                report.manifest_version,
                report.checksums_verified
            )
        }
        Err(_) if args.json => {
            println!("{}", serde_json::to_string_pretty(&json(&args.path, format, &result))?)
        }
        Err(problems) => {
            for m in problems {
                println!("{m}");
            }
        }
    }
    match result {
        Ok(_) => Ok(exit::OK),
        Err(problems) => {
            tracing::error!(
                "{shown}: {} problem(s) found: the backup does not match its manifest",
                problems.len()
            );
            Ok(exit::MISMATCH)
        }
    }
}

fn json(path: &Path, format: &str, result: &Result<Report, Vec<Mismatch>>) -> serde_json::Value {
    match result {
        Ok(r) => serde_json::json!({
            "path": path, "format": format, "ok": true,
            "manifest_version": r.manifest_version,
            "system_identifier": r.system_identifier.map(|s| s.to_string()),
            "files": r.files_verified, "bytes": r.bytes_verified,
            "checksums_verified": r.checksums_verified, "wal_records_verified": r.wal_records_verified,
            "problems": [],
        }),
        Err(problems) => serde_json::json!({
            "path": path, "format": format, "ok": false,
            "problems": problems.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        }),
    }
}

fn read_manifest(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn verify_dir(args: &VerifyArgs) -> Result<Result<Report, Vec<Mismatch>>> {
    let manifest_path = args.manifest.clone().unwrap_or_else(|| args.path.join("backup_manifest"));
    let manifest = read_manifest(&manifest_path)?;
    let options = pg_backup_manifest::DirOptions {
        parse_wal: !args.no_parse_wal,
        wal_dir: args.wal_directory.clone(),
        ..pg_backup_manifest::DirOptions::default()
    };
    Ok(pg_backup_manifest::verify_directory_with(&args.path, &manifest, &options))
}

/// `base.tar`, `<oid>.tar` and `backup_manifest` in a directory.
fn verify_tar_dir(args: &VerifyArgs) -> Result<Result<Report, Vec<Mismatch>>> {
    let manifest_path = args.manifest.clone().unwrap_or_else(|| args.path.join("backup_manifest"));
    let manifest = match Manifest::parse(&read_manifest(&manifest_path)?) {
        Ok(m) => m,
        Err(e) => return Ok(Err(vec![Mismatch::Manifest(e)])),
    };
    let mut check = TarCheck::new(&manifest);
    let mut names: Vec<String> = std::fs::read_dir(&args.path)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let Some(stem) = name.strip_suffix(".tar") else {
            if name != "backup_manifest" && name != "pg_wal.tar" {
                check.problems.push(Mismatch::Io { path: name, detail: "not part of a tar backup".into() });
            }
            continue;
        };
        let prefix = match stem {
            "base" => String::new(),
            "pg_wal" => "pg_wal/".to_owned(),
            oid if oid.parse::<u32>().is_ok() => format!("pg_tblspc/{oid}/"),
            _ => {
                check.problems.push(Mismatch::Io { path: name, detail: "not part of a tar backup".into() });
                continue;
            }
        };
        let file = args.path.join(&name);
        check.archive(&file, &prefix, false)?;
    }
    Ok(check.finish(&manifest))
}

/// One tar holding the data directory and its `backup_manifest`.
fn verify_tar_file(args: &VerifyArgs) -> Result<Result<Report, Vec<Mismatch>>> {
    let bytes = match &args.manifest {
        Some(p) => read_manifest(p)?,
        None => {
            let mut buffer = ManifestBuffer::new();
            let found = extract_member(&args.path, "backup_manifest", &mut buffer)?;
            if !found {
                bail!(
                    "{} has no backup_manifest member: give the manifest with --manifest",
                    args.path.display()
                );
            }
            buffer.as_bytes().to_vec()
        }
    };
    let manifest = match Manifest::parse(&bytes) {
        Ok(m) => m,
        Err(e) => return Ok(Err(vec![Mismatch::Manifest(e)])),
    };
    let mut check = TarCheck::new(&manifest);
    check.archive(&args.path, "", true)?;
    Ok(check.finish(&manifest))
}

/// Streams a tar file through `pg_tar`'s reader.
fn each_event(path: &Path, mut f: impl FnMut(TarEvent) -> Result<bool>) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = TarReader::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        while let Some(event) = reader.next_event().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
            if !f(event)? {
                return Ok(());
            }
        }
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            reader.finish().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            while let Some(event) =
                reader.next_event().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            {
                if !f(event)? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        reader.feed(Bytes::copy_from_slice(&buf[..n]));
    }
}

fn extract_member(path: &Path, name: &str, out: &mut ManifestBuffer) -> Result<bool> {
    let mut inside = false;
    let mut found = false;
    each_event(path, |event| {
        match event {
            TarEvent::EntryStart(h) => inside = h.path == name.as_bytes() && h.kind == EntryKind::File,
            TarEvent::Data(d) if inside => {
                found = true;
                out.push(&d).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
            TarEvent::EntryEnd if inside => {
                found = true;
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    })?;
    Ok(found)
}

struct TarCheck {
    verifier: Verifier,
    problems: Vec<Mismatch>,
    ignore: IgnoreList,
    algorithms: std::collections::HashMap<Vec<u8>, pg_backup_manifest::ChecksumAlgorithm>,
}

impl TarCheck {
    fn new(manifest: &Manifest) -> Self {
        let algorithms = manifest
            .files()
            .iter()
            .filter(|f| !f.checksum().algorithm().is_empty())
            .map(|f| (f.path().to_vec(), f.checksum().algorithm()))
            .collect();
        let ignore = IgnoreList::pg_verifybackup();
        Self {
            verifier: Verifier::new().with_ignore(ignore.clone()),
            problems: Vec::new(),
            ignore,
            algorithms,
        }
    }

    fn archive(&mut self, path: &Path, prefix: &str, manifest_inside: bool) -> Result<()> {
        let mut current: Option<(String, Option<FileHasher>, u64)> = None;
        let mut ended = false;
        let result = each_event(path, |event| {
            match event {
                TarEvent::EntryStart(h) => {
                    if h.kind == EntryKind::File {
                        let mut bytes = prefix.as_bytes().to_vec();
                        bytes.extend_from_slice(&h.path);
                        let hasher = self.algorithms.get(&bytes).map(|a| FileHasher::new(*a));
                        let member = String::from_utf8_lossy(&bytes).into_owned();
                        current = Some((member, hasher, 0));
                    }
                }
                TarEvent::Data(d) => {
                    if let Some((_, hasher, size)) = &mut current {
                        *size += d.len() as u64;
                        if let Some(h) = hasher {
                            h.update(&d);
                        }
                    }
                }
                TarEvent::EntryEnd => {
                    if let Some((member, hasher, size)) = current.take() {
                        if manifest_inside && member == "backup_manifest" {
                            return Ok(true);
                        }
                        if self.ignore.contains(member.as_bytes()) {
                            return Ok(true);
                        }
                        let checksum =
                            hasher.map(|h| h.finish_digest().checksum).unwrap_or_else(Checksum::none);
                        if let Err(e) =
                            self.verifier.file_received_checksum(member.as_bytes(), size, checksum)
                        {
                            self.problems.push(Mismatch::Io { path: member, detail: e.to_string() });
                        }
                    }
                }
                TarEvent::End => ended = true,
            }
            Ok(true)
        });
        let name = path.display().to_string();
        if let Err(e) = result {
            self.problems.push(Mismatch::Io { path: name.clone(), detail: format!("{e:#}") });
        } else if !ended {
            self.problems.push(Mismatch::Io {
                path: name,
                detail: "the archive has no end-of-archive blocks: truncated".into(),
            });
        }
        Ok(())
    }

    fn finish(mut self, manifest: &Manifest) -> Result<Report, Vec<Mismatch>> {
        match self.verifier.finish_parsed(manifest, None, None) {
            Ok(report) if self.problems.is_empty() => Ok(report),
            Ok(_) => Err(self.problems),
            Err(mut more) => {
                self.problems.append(&mut more);
                Err(self.problems)
            }
        }
    }
}
