//! Server-free: the WAL of every committed recording (`fixtures/pg12…18.pgrec.gz`, fetch mode)
//! is read record by record by the replay, as at the end of a live backup, and a flipped byte in
//! a WAL record of the backup's range fails the replay (PostgreSQL 12, which has no manifest,
//! included).

use std::io::Read;
use std::path::Path;

use pg_physical::{PhysicalError, replay};
use record_sink::NullSink;

fn plain(major: u32) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/pg{major}.pgrec.gz"));
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn the_wal_of_every_recording_is_read_and_a_flipped_wal_byte_fails() {
    for major in 12..=18 {
        let bytes = plain(major);
        let summary =
            block_on(replay(&bytes[..], &mut NullSink::new())).unwrap_or_else(|e| panic!("pg{major}: {e}"));
        assert!(summary.wal_records_verified > 0, "pg{major}: {summary:?}");
        // The page holding the start of the range: its header carries timeline 1 and the page's
        // address; the first record of the range follows at the start's offset in that page.
        let (start, _) = summary.start.unwrap();
        let page = start.0 - start.0 % 8192;
        let mut pattern = 1u32.to_le_bytes().to_vec();
        pattern.extend_from_slice(&page.to_le_bytes());
        let at = bytes.windows(12).position(|w| w == pattern).expect("the start page's header") - 4;
        let mut damaged = bytes.clone();
        // xl_prev of the first record: covered by the record's CRC.
        damaged[at + (start.0 - page) as usize + 10] ^= 0x01;
        let err =
            block_on(replay(&damaged[..], &mut NullSink::new())).expect_err("a flipped WAL byte must fail");
        assert!(matches!(err, PhysicalError::WalCheck(_)), "pg{major}: {err}");
        assert!(err.to_string().contains("checksum"), "pg{major}: {err}");
    }
}
