//! Peak memory of a logical backup: fills a database of about `SIZE_MB` (default 1024) on a
//! throwaway PostgreSQL 15 cluster, dumps it with `pg_dump -Fc -Z0` through a [`DumpSource`]
//! into a `NullSink`, and prints the bytes streamed and this process's peak RSS (VmHWM) before
//! and after the dump.
//!
//! ```sh
//! SIZE_MB=1024 cargo run -p pg-logical --example dump_memory
//! ```

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use pg_logical::{BackupOptions, ToolSearch, plan_backup};
use pg_testkit::{Auth, ClusterOptions, TestCluster, User};
use record_sink::{NullSink, Source};

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let size_mb: u64 = std::env::var("SIZE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let cluster = TestCluster::start_with(
        15,
        ClusterOptions::new().auth(Auth::ScramSha256).user(User::new("admin").password("pw").superuser()),
    )
    .expect("cluster");
    cluster.sql("CREATE DATABASE big").unwrap();
    // About 330 bytes per row on disk and ~270 in the dump.
    let rows = size_mb * 1024 * 1024 / 330;
    let t = Instant::now();
    cluster
        .sql_db(
            "big",
            &format!(
                "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 8) AS v FROM generate_series(1, {rows}) g"
            ),
        )
        .unwrap();
    let db_size = cluster.sql("SELECT pg_database_size('big')").unwrap();
    println!(
        "database: {} MB in {:.1} s",
        db_size.parse::<u64>().unwrap_or(0) / (1 << 20),
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut map = BTreeMap::new();
    map.insert("location".to_owned(), format!("postgres://admin:pw@127.0.0.1:{}/big", cluster.port()));
    let mut opts = BackupOptions::from_map(&map).unwrap();
    let cache = pg_testkit::cache_dir();
    opts.connection.tool_search = ToolSearch::dirs((14..=18).map(|m| cache.join(format!("tools-{m}/bin"))));
    let before = vm_hwm_kib();
    let t = Instant::now();
    let report = rt.block_on(async {
        let plan = plan_backup(&opts).await.unwrap();
        let mut sink = NullSink::default();
        let mut bytes = 0;
        for mut s in plan.into_sources() {
            bytes += s.run(&mut sink).await.unwrap().bytes;
        }
        bytes
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "dumped {} MB in {secs:.1} s ({:.0} MB/s); peak RSS before the dump {} MB, after {} MB",
        report >> 20,
        (report >> 20) as f64 / secs,
        before / 1024,
        vm_hwm_kib() / 1024
    );
}
