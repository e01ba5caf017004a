//! WAL written by real servers 12-18: a checkpoint's redo point to the end of a switch, with
//! records spanning pages and a 20 MB record spanning segments, read from the running cluster's
//! `pg_wal`. It verifies, counts as many records as the same-major `pg_waldump` (14-18, where the
//! tool is installed), and a flipped byte in a record, a removed segment and a truncated one are
//! found and named.

use std::path::Path;
use std::process::Command;

use pg_testkit::{ScratchDir, TestCluster};
use pg_wal::dir::{DirError, Expect, verify_range};
use pg_wal::{WalErrorKind, format::segment_name};
use pg_wire::replication::Lsn;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn lsn(text: &str) -> Result<Lsn, Box<dyn std::error::Error>> {
    Ok(text.trim().parse()?)
}

/// Copies the segment files of `from` into a new directory.
fn copy_wal(from: &Path) -> Result<ScratchDir, Box<dyn std::error::Error>> {
    let scratch = ScratchDir::new()?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), scratch.path().join(entry.file_name()))?;
        }
    }
    Ok(scratch)
}

pg_testkit::per_major!(fn real_wal_verifies_and_damage_is_found(major) {
    check(major).unwrap();
});

fn check(major: u32) -> TestResult {
    let cluster = TestCluster::start(major)?;
    // The slot keeps the checkpoints below from removing the range's segments.
    cluster.sql("SELECT pg_create_physical_replication_slot('keep', true)")?;
    cluster.sql("CHECKPOINT")?;
    let start = lsn(&cluster.sql("SELECT redo_lsn FROM pg_control_checkpoint()")?)?;
    let sysid: u64 = cluster.sql("SELECT system_identifier FROM pg_control_system()")?.trim().parse()?;
    cluster.sql(
        "CREATE TABLE t(a int, b text); \
         INSERT INTO t SELECT g, repeat('x', g % 3000) FROM generate_series(1, 3000) g; \
         SELECT pg_logical_emit_message(false, 'big', repeat('y', 20000000)); \
         CHECKPOINT; UPDATE t SET a = a + 1 WHERE a % 7 = 0;",
    )?;
    let end = lsn(&cluster.sql("SELECT pg_current_wal_insert_lsn()")?)?;
    cluster.sql("SELECT pg_switch_wal()")?;
    let seg_size: u32 =
        cluster.sql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")?.trim().parse()?;
    let wal = copy_wal(&cluster.data_dir().join("pg_wal"))?;
    let expect = Expect { system_identifier: Some(sysid), major: Some(major) };

    let summary = verify_range(wal.path(), 1, start, end, &expect)?;
    assert!(summary.records > 3000, "{summary:?}");
    assert!(summary.segments >= 2, "{summary:?}");
    assert_eq!(summary.major, Some(major));
    assert_eq!(summary.system_identifier, Some(sysid));

    // The oracle: pg_waldump of the same major prints one line per record.
    if let Ok(waldump) = cluster.client_bin_for_major("pg_waldump") {
        let out = Command::new(waldump)
            .arg("-p")
            .arg(wal.path())
            .args(["-t", "1", "-s", &start.to_string(), "-e", &end.to_string()])
            .output()?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("rmgr:")).count();
        assert_eq!(lines as u64, summary.records, "pg_waldump counts the same records");
    }

    // Another cluster's WAL.
    let other = Expect { system_identifier: Some(sysid ^ 1), major: Some(major) };
    let e = verify_range(wal.path(), 1, start, end, &other).unwrap_err();
    assert!(e.to_string().contains("another database system"), "{e}");

    // A flipped byte in the big record (in the second segment of the range).
    let second = segment_name(1, start.0 / u64::from(seg_size) + 1, seg_size);
    let path = wal.path().join(&second);
    let mut bytes = std::fs::read(&path)?;
    bytes[100_000] ^= 0x55;
    std::fs::write(&path, &bytes)?;
    match verify_range(wal.path(), 1, start, end, &expect) {
        Err(DirError::Wal(e)) => assert!(matches!(e.kind, WalErrorKind::Checksum { .. }), "{e}"),
        other => panic!("a flipped byte must be found: {other:?}"),
    }
    bytes[100_000] ^= 0x55;
    // Truncated.
    std::fs::write(&path, &bytes[..50_000])?;
    let e = verify_range(wal.path(), 1, start, end, &expect).unwrap_err();
    assert!(e.to_string().contains(&second) && e.to_string().contains("ends after 50000 bytes"), "{e}");
    // Missing.
    std::fs::remove_file(&path)?;
    let e = verify_range(wal.path(), 1, start, end, &expect).unwrap_err();
    assert!(matches!(e, DirError::MissingSegment { .. }) && e.to_string().contains(&second), "{e}");
    // No WAL at all.
    let empty = ScratchDir::new()?;
    let e = verify_range(empty.path(), 1, start, end, &expect).unwrap_err();
    assert!(matches!(e, DirError::NoSegments { .. }), "{e}");
    Ok(())
}
