//! Regenerates the committed `BASE_BACKUP` recordings in `fixtures/` (see `fixtures/README.md`).
//!
//! For each selected major (env `PG_VERSIONS`, default 12-18) it starts a tiny cluster with
//! pg-testkit (1 MB WAL segments, data checksums), adds a tablespace `ts one`, a table in it
//! (rows `fixture row 00001` … `00500`: the replay tests look for them), a small table in the
//! default tablespace and an oddly named file in the data directory, takes a fetch-mode backup
//! into a [`record_sink::NullSink`] while recording the backup connection, and stores the
//! recording gzip-compressed as `fixtures/pg<major>.pgrec.gz` (the readers in
//! `pg_recording` accept both forms).
//!
//! ```text
//! cargo run -p pg-physical --example record_fixtures [-- <output dir>]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use pg_config::Config;
use pg_physical::{BackupOptions, RunOptions, WalMethod};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster};
use record_sink::NullSink;

type Error = Box<dyn std::error::Error>;

/// The oddly named file put in the data directory (space, non-ASCII, `#`).
const ODD_NAME: &str = "odd name é #1.txt";

fn cluster(major: u32) -> Result<TestCluster, Error> {
    let cluster = TestCluster::start_with(major, ClusterOptions::new().wal_segsize_mb(1).checksums(true))?;
    cluster.create_tablespace("ts one")?;
    cluster.sql(
        "create table in_ts tablespace \"ts one\" as
             select g, 'fixture row ' || lpad(g::text, 5, '0') as t from generate_series(1, 500) g;
         create table small as select g from generate_series(1, 100) g;
         checkpoint;",
    )?;
    let odd = cluster.data_dir().join(ODD_NAME);
    std::fs::write(&odd, "odd\n")?;
    let (uid, gid) = cluster.server_user_ids();
    std::os::unix::fs::chown(&odd, Some(uid), Some(gid))?;
    Ok(cluster)
}

async fn record(major: u32, out_dir: &Path) -> Result<(PathBuf, u64, u64), Error> {
    let cluster = cluster(major)?;
    let config = Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        cluster.port()
    ))?;
    let scratch = ScratchDir::new()?;
    let raw = scratch.path().join(format!("pg{major}.pgrec"));
    let options = BackupOptions {
        label: format!("fixture pg{major}"),
        wal_method: WalMethod::Fetch,
        ..BackupOptions::default()
    };
    let run = RunOptions { record_to: Some(raw.clone()), ..RunOptions::default() };
    let report = pg_physical::backup(&config, &options, &run, &mut NullSink::default())
        .await
        .map_err(|e| format!("PostgreSQL {major}: backup failed: {e}\n{}", cluster.log_contents()))?;
    let raw_len = std::fs::metadata(&raw)?.len();
    let dest = out_dir.join(format!("pg{major}.pgrec.gz"));
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&dest)?, flate2::Compression::best());
    std::io::copy(&mut std::fs::File::open(&raw)?, &mut gz)?;
    gz.finish()?.flush()?;
    let gz_len = std::fs::metadata(&dest)?.len();
    log(&format!(
        "PostgreSQL {major} ({}): {} files, recording {raw_len} bytes, stored {gz_len} bytes in {}",
        report.server.server_version,
        report.summary.files,
        dest.display()
    ));
    Ok((dest, raw_len, gz_len))
}

/// Progress goes to stderr: this is a developer tool, not library code.
#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("{line}");
}

fn main() -> Result<(), Error> {
    let out_dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    };
    std::fs::create_dir_all(&out_dir)?;
    let out_dir = out_dir.canonicalize()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut raw_total, mut gz_total) = (0, 0);
    for major in pg_testkit::selected_majors() {
        let (_, raw, gz) = rt.block_on(record(major, &out_dir))?;
        raw_total += raw;
        gz_total += gz;
    }
    log(&format!("total: recordings {raw_total} bytes, stored {gz_total} bytes"));
    Ok(())
}
