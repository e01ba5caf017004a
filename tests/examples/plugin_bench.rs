//! Benchmark (not a test): the physical backup through `postgresqlBinImporter` and the test
//! host, against the native backup into the null sink, on one throwaway cluster with pgbench
//! data. Both read the same cluster, alternately; the host hashes what it receives (SHA-256,
//! as a store would) but writes nothing, so the figures are the plugin path's cost. A last
//! variant has the host only count what it receives, as the null sink does.
//!
//! ```sh
//! cargo build --release -p plakar-postgresql
//! cargo run --release -p e2e --example plugin_bench -- 35 2     # scale, rounds
//! ```
//!
//! Variants: buffered small files (the default) and every file streamed one at a time
//! (`PLAKAR_PG_BUFFER_THRESHOLD=0`). Prints MB/s, the ratio to native, the plugin's peak RSS,
//! and the CPU seconds per GB of body each process used: the server (postmaster and backends),
//! this process (the native client, or the host), the plugin.

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

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces): the
/// process state first, so `utime` is index 11. Empty if the process is gone.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').map_or_else(Vec::new, |i| stat[i + 1..].split_whitespace().map(str::to_owned).collect())
}

/// CPU seconds in `fields` (of [`stat_fields`]): the process's own (user + system, all
/// threads), and its reaped children's.
fn cpu_s_of(fields: &[String]) -> (f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    let at = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ((at(11) + at(12)) / tick, (at(13) + at(14)) / tick)
}

/// CPU seconds of `pid`, and of its reaped children.
fn cpu_s(pid: u32) -> (f64, f64) {
    cpu_s_of(&stat_fields(pid))
}

/// CPU seconds used so far by the cluster: the postmaster, its live children, and the children
/// it has reaped (a walsender that served a finished backup).
fn server_cpu_s(postmaster: u32) -> f64 {
    let (own, reaped) = cpu_s(postmaster);
    let mut live = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let fields = stat_fields(pid);
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
            live += cpu_s_of(&fields).0;
        }
    }
    own + reaped + live
}

/// A plugin run: its label, the plugin's environment, the host's store.
type Variant<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a BlobStore);

/// Lets the walsender that served a finished backup exit and be reaped by the postmaster, so
/// that its CPU time shows in the postmaster's children's total.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let counting = BlobStore::counting(scratch.path()).unwrap();
    let postmaster = cluster.pid().expect("a local cluster");
    let me = std::process::id();
    // CPU seconds per GB of body: the server, this process (the native client, or the host),
    // and the plugin.
    let per_gb = |cpu: f64, bytes: u64| cpu / (bytes as f64 / 1e9);
    for round in 1..=rounds {
        // Native: the same plan into the null sink, in this process.
        let config = pg_config::Config::parse(&conninfo).unwrap();
        let mut plan = Plan::physical(config, Default::default(), Default::default(), false).unwrap();
        let mut sink = NullSink::new();
        let (server0, me0) = (server_cpu_s(postmaster), cpu_s(me).0);
        let t = Instant::now();
        plan.run(&mut sink, &CancellationToken::new()).await.unwrap();
        let native = t.elapsed();
        settle().await;
        let (server, client) = (server_cpu_s(postmaster) - server0, cpu_s(me).0 - me0);
        let bytes = sink.stats().bytes;
        let native_rate = bytes as f64 / native.as_secs_f64() / 1e6;
        println!(
            "round {round} native   -> NullSink           {:>8.1} MB in {:>6.2} s = {native_rate:>7.1} MB/s; \
             CPU s/GB: server {:.2}, client {:.2}",
            bytes as f64 / 1e6,
            native.as_secs_f64(),
            per_gb(server, bytes),
            per_gb(client, bytes),
        );
        let variants: [Variant<'_>; 3] = [
            ("plugin, buffered ≤1 MiB            ", &[], &store),
            ("plugin, all streamed               ", &[("PLAKAR_PG_BUFFER_THRESHOLD", "0")], &store),
            ("plugin, buffered, host only counts", &[], &counting),
        ];
        for (label, env, store) in variants {
            let mut options = SpawnOptions::default();
            for (k, v) in env {
                options.env.push(((*k).into(), (*v).into()));
            }
            let plugin = Plugin::spawn(&exe, &options).await.unwrap();
            let cfg: BTreeMap<String, String> = [("location".to_string(), location.clone())].into();
            let init = import::init(plugin.channel(), "postgres+bin", cfg, 8).await.unwrap();
            let (server0, me0, plugin0) = (server_cpu_s(postmaster), cpu_s(me).0, cpu_s(plugin.pid).0);
            let t = Instant::now();
            let outcome = import::run(plugin.channel(), &init, Settings::new(8, store.clone())).await;
            let took = t.elapsed();
            settle().await;
            let (server, host, plugin_cpu) =
                (server_cpu_s(postmaster) - server0, cpu_s(me).0 - me0, cpu_s(plugin.pid).0 - plugin0);
            assert_eq!(outcome.result, Ok(()), "{}", plugin.stderr());
            let rss = peak_rss_kib(plugin.pid);
            let rate = outcome.bytes as f64 / took.as_secs_f64() / 1e6;
            println!(
                "round {round} {label} {:>8.1} MB in {:>6.2} s = {rate:>7.1} MB/s ({:.2}x native), \
                 plugin peak RSS {:.1} MiB; CPU s/GB: server {:.2}, host {:.2}, plugin {:.2}",
                outcome.bytes as f64 / 1e6,
                took.as_secs_f64(),
                rate / native_rate,
                rss as f64 / 1024.0,
                per_gb(server, outcome.bytes),
                per_gb(host, outcome.bytes),
                per_gb(plugin_cpu, outcome.bytes),
            );
            let _ = plugin.close_stdin_and_wait(Duration::from_secs(10)).await;
        }
    }
}
