//! Against real servers 12-18: `pg_basebackup -Fp` (the newest client, which talks to every
//! major) makes a plain backup with a tablespace; `verify_directory` must accept it and find
//! each kind of damage, and agree with the same-major `pg_verifybackup -n` where that tool is
//! installed.

use std::path::Path;
use std::process::Command;

use pg_backup_manifest::{ChecksumAlgorithm, IgnoreList, Manifest, Mismatch, verify_directory};
use pg_testkit::{ScratchDir, TestCluster};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A different per-file algorithm for each major, so that all of them meet a real server.
fn algorithm_for(major: u32) -> ChecksumAlgorithm {
    match major % 6 {
        0 => ChecksumAlgorithm::Sha224,
        1 => ChecksumAlgorithm::Sha256,
        2 => ChecksumAlgorithm::Sha384,
        3 => ChecksumAlgorithm::Sha512,
        4 => ChecksumAlgorithm::None,
        _ => ChecksumAlgorithm::Crc32c,
    }
}

/// Runs `pg_basebackup -Fp -X fetch` into `out` (tablespace `ts_dir` mapped beside it).
fn base_backup(cluster: &TestCluster, ts_dir: &Path, out: &Path, algorithm: ChecksumAlgorithm) -> TestResult {
    let mapped = out.with_extension("ts");
    let status = Command::new(cluster.client_bin("pg_basebackup")?)
        .env_clear()
        .arg("-d")
        .arg(cluster.conninfo_socket("postgres"))
        .arg("-D")
        .arg(out)
        .args(["-Fp", "-c", "fast", "-X", "fetch", "--no-sync"])
        .arg(format!("--manifest-checksums={}", algorithm.name()))
        .arg(format!("-T{}={}", ts_dir.display(), mapped.display()))
        .status()?;
    if !status.success() {
        return Err(format!("pg_basebackup failed: {status}").into());
    }
    Ok(())
}

/// `Some(success)` from the same-major `pg_verifybackup -n`, `None` when it is not installed.
fn pg_verifybackup(cluster: &TestCluster, dir: &Path) -> Option<bool> {
    let Ok(tool) = cluster.client_bin_for_major("pg_verifybackup") else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "PostgreSQL {}: no pg_verifybackup of that major, differential check skipped",
                cluster.major()
            );
        }
        return None;
    };
    let out = Command::new(tool).arg("-n").arg("-q").arg(dir).output().ok()?;
    Some(out.status.success())
}

fn kinds(mismatches: &[Mismatch]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = mismatches
        .iter()
        .map(|m| match m {
            Mismatch::Size { .. } => "size",
            Mismatch::Checksum { .. } => "checksum",
            Mismatch::Missing { .. } => "missing",
            Mismatch::Unexpected { .. } => "unexpected",
            _ => "other",
        })
        .collect();
    kinds.sort_unstable();
    kinds
}

pg_testkit::per_major!(fn plain_backup_verifies_and_damage_is_found(major) {
    let run = || -> TestResult {
        let cluster = TestCluster::start(major)?;
        let ts_dir = cluster.create_tablespace("ts")?;
        cluster.sql("CREATE TABLE t (i int) TABLESPACE ts; INSERT INTO t SELECT generate_series(1, 5000);")?;
        let scratch = ScratchDir::new()?;
        let out = scratch.path().join("backup");
        let algorithm = algorithm_for(major);
        base_backup(&cluster, &ts_dir, &out, algorithm)?;

        let manifest_path = out.join("backup_manifest");
        if major < 13 {
            // PostgreSQL 12 has no backup manifests: nothing to verify.
            assert!(!manifest_path.exists(), "PostgreSQL {major} wrote a backup_manifest");
            return Ok(());
        }
        let bytes = std::fs::read(&manifest_path)?;
        let manifest = Manifest::parse(&bytes)?;
        assert_eq!(manifest.version(), if major >= 17 { 2 } else { 1 });
        assert_eq!(manifest.checksum_algorithm(), Some(algorithm));
        if major >= 17 {
            let id: u64 = cluster.sql("SELECT system_identifier FROM pg_control_system()")?.parse()?;
            assert_eq!(manifest.system_identifier(), Some(id));
        }
        let tablespace_files = manifest.files().iter().filter(|f| f.path().starts_with(b"pg_tblspc/")).count();
        assert!(tablespace_files >= 2, "the table's files are listed under pg_tblspc/");
        let range = manifest.wal_ranges()[0];
        assert_eq!(range.timeline, 1);

        // Intact: verified, through the pg_tblspc symlink too.
        let report = verify_directory(&out, &bytes).map_err(|m| format!("{m:?}"))?;
        // pg_verifybackup's defaults skip pg_wal/ and postgresql.auto.conf (listed by the server).
        let ignore = IgnoreList::pg_verifybackup();
        let checked = manifest.files().iter().filter(|f| !ignore.contains(f.path())).count();
        let skipped: Vec<String> =
            manifest.files().iter().filter(|f| ignore.contains(f.path())).map(|f| f.display_path()).collect();
        assert!(skipped.contains(&"postgresql.auto.conf".to_owned()), "{skipped:?}");
        assert!(
            skipped.iter().all(|p| p == "postgresql.auto.conf" || p.starts_with("pg_wal/archive_status/")),
            "{skipped:?}"
        );
        assert_eq!(report.files_verified as usize, checked);
        let with_checksums = if algorithm == ChecksumAlgorithm::None { 0 } else { checked };
        assert_eq!(report.checksums_verified as usize, with_checksums);
        if let Some(ok) = pg_verifybackup(&cluster, &out) {
            assert!(ok, "pg_verifybackup rejects the intact backup");
        }

        // Damaged: one of each kind.
        let mut label = std::fs::read(out.join("backup_label"))?;
        label.extend_from_slice(b"# appended\n");
        std::fs::write(out.join("backup_label"), &label)?;
        std::fs::remove_file(out.join("PG_VERSION"))?;
        std::fs::write(out.join("base/extra_file"), b"not from the server")?;
        let relation = manifest
            .files()
            .iter()
            .find(|f| f.path().starts_with(b"pg_tblspc/") && f.size() >= 8192)
            .expect("a tablespace relation of at least one page");
        let path = out.join(relation.path_str().unwrap());
        let mut content = std::fs::read(&path)?;
        content[4000] ^= 0x55;
        std::fs::write(&path, &content)?;

        let mismatches = verify_directory(&out, &bytes).expect_err("damage must be found");
        let expected: &[&str] = if algorithm == ChecksumAlgorithm::None {
            &["missing", "size", "unexpected"]
        } else {
            &["checksum", "missing", "size", "unexpected"]
        };
        assert_eq!(kinds(&mismatches), expected, "{mismatches:?}");
        if let Some(ok) = pg_verifybackup(&cluster, &out) {
            assert!(!ok, "pg_verifybackup accepts the damaged backup");
        }
        Ok(())
    };
    run().unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"));
});
