//! Benchmark (not a test): the physical backup through `postgresqlBinImporter` and the test
//! host, against the native backup into the null sink, on one throwaway cluster with pgbench
//! data. Both read the same cluster, alternately; the host hashes what it receives (SHA-256,
//! as a store would) but writes nothing, so the figures are the plugin path's cost.
//!
//! ```sh
//! cargo build --release -p plakar-postgresql
//! cargo run --release -p e2e --example plugin_bench -- 35 2     # scale, rounds
//! ```
//!
//! Variants: buffered small files (the default) and every file streamed one at a time
//! (`PLAKAR_PG_BUFFER_THRESHOLD=0`). Prints MB/s, the ratio to native, and the plugin's peak RSS.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line benchmark

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_plan::{CancellationToken, Plan};
use e2e::import::{self, Settings};
use e2e::store::BlobStore;
use e2e::transport::{Plugin, SpawnOptions};
use pg_testkit::TestCluster;
use record_sink::NullSink;

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(35);
    let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let major: u32 = std::env::var("PG_BENCH_MAJOR").ok().and_then(|m| m.parse().ok()).unwrap_or(15);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let exe = root.join("target/release/postgresqlBinImporter");
    assert!(exe.exists(), "build it first: cargo build --release -p plakar-postgresql");
    let cluster = TestCluster::start(major).unwrap();
    eprintln!("pgbench -i -s {scale} on PostgreSQL {major}…");
    let out = Command::new(pg_testkit::client_bin("pgbench").unwrap())
        .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string(), "-U", "postgres", "postgres"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cluster.sql("checkpoint").unwrap();
    let conninfo =
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", cluster.port());
    let location = format!("postgres+bin://postgres@127.0.0.1:{}?sslmode=disable", cluster.port());
    let scratch = tempfile::tempdir().unwrap();
    let store = BlobStore::new(scratch.path(), false).unwrap();
    for round in 1..=rounds {
        // Native: the same plan into the null sink, in this process.
        let config = pg_config::Config::parse(&conninfo).unwrap();
        let mut plan = Plan::physical(config, Default::default(), Default::default(), false).unwrap();
        let mut sink = NullSink::new();
        let t = Instant::now();
        plan.run(&mut sink, &CancellationToken::new()).await.unwrap();
        let native = t.elapsed();
        let bytes = sink.stats().bytes;
        let native_rate = bytes as f64 / native.as_secs_f64() / 1e6;
        println!(
            "round {round} native   -> NullSink           {:>8.1} MB in {:>6.2} s = {native_rate:>7.1} MB/s",
            bytes as f64 / 1e6,
            native.as_secs_f64()
        );
        for (label, threshold) in [("plugin, buffered ≤1 MiB", None), ("plugin, all streamed   ", Some("0"))]
        {
            let mut options = SpawnOptions::default();
            if let Some(t) = threshold {
                options.env.push(("PLAKAR_PG_BUFFER_THRESHOLD".into(), t.into()));
            }
            let plugin = Plugin::spawn(&exe, &options).await.unwrap();
            let cfg: BTreeMap<String, String> = [("location".to_string(), location.clone())].into();
            let init = import::init(plugin.channel(), "postgres+bin", cfg, 8).await.unwrap();
            let t = Instant::now();
            let outcome = import::run(plugin.channel(), &init, Settings::new(8, store.clone())).await;
            let took = t.elapsed();
            assert_eq!(outcome.result, Ok(()), "{}", plugin.stderr());
            let rss = peak_rss_kib(plugin.pid);
            let rate = outcome.bytes as f64 / took.as_secs_f64() / 1e6;
            println!(
                "round {round} {label} {:>8.1} MB in {:>6.2} s = {rate:>7.1} MB/s ({:.2}x native), plugin peak RSS {:.1} MiB",
                outcome.bytes as f64 / 1e6,
                took.as_secs_f64(),
                rate / native_rate,
                rss as f64 / 1024.0
            );
            let _ = plugin.close_stdin_and_wait(Duration::from_secs(10)).await;
        }
    }
}
