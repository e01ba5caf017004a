//! The benchmark itself: a throwaway cluster with pgbench data, then rounds of the four
//! operations of [`Op::ROUND`], alternately, each in a child process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pg_testkit::{ClusterOptions, TestCluster};
use serde::Serialize;

use crate::measure::{Measured, measured};
use crate::ours::{OursReport, RuntimeKind};
use crate::report::{Op, OpSummary, Sample, print_table, progress, render_table, summarize};

/// Options of the benchmark (the default command).
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// PostgreSQL major of the server and of pg_basebackup (14-18: the tools must exist).
    #[arg(long, default_value_t = 17)]
    major: u32,
    /// pgbench scale factor (35 ~ 0.5 GB, 200 ~ 3 GB).
    #[arg(long, default_value_t = 35)]
    scale: u32,
    /// Rounds of the four operations.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory for the backup directories of both tools (same filesystem for both). The
    /// clusters themselves live on tmpfs (/dev/shm).
    #[arg(long, default_value = "target/pg-bench")]
    backup_root: PathBuf,
    /// Initialise the cluster with data checksums (page verification costs the server time).
    #[arg(long)]
    checksums: bool,
    /// The tokio runtime of our side (`multi` is what the `pgplakar` binary uses).
    #[arg(long, value_enum, default_value = "current")]
    ours_runtime: RuntimeKind,
}

/// The JSON results.
#[derive(Debug, Serialize)]
struct Results {
    tool: &'static str,
    version: &'static str,
    major: u32,
    server_version: String,
    scale: u32,
    rounds: u32,
    data_checksums: bool,
    ours_runtime: RuntimeKind,
    database_bytes: u64,
    pgbench_init_s: f64,
    backup_root: PathBuf,
    cluster_dir: PathBuf,
    summary: Vec<OpSummary>,
    samples: Vec<Sample>,
    ours_reports: Vec<OursReport>,
}

/// Runs the benchmark.
pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let pg_basebackup = pg_testkit::client_bin_for_major("pg_basebackup", args.major)
        .with_context(|| format!("pg_basebackup {} is needed (scripts/setup-postgres)", args.major))?;
    let pgbench = pg_testkit::client_bin("pgbench")?;
    std::fs::create_dir_all(&args.backup_root)
        .with_context(|| format!("creating {}", args.backup_root.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("pg-bench-")
        .tempdir_in(&args.backup_root)
        .with_context(|| format!("creating a directory in {}", args.backup_root.display()))?;
    let backup_root = std::fs::canonicalize(scratch.path())?;

    progress(&format!("starting PostgreSQL {} (data checksums {})", args.major, on_off(args.checksums)));
    let cluster = TestCluster::start_with(
        args.major,
        ClusterOptions::new().checksums(args.checksums).max_wal_size_mb(8192),
    )?;
    let server_version = cluster.sql("show server_version")?;
    progress(&format!("pgbench -i -s {} into {}", args.scale, cluster.data_dir().display()));
    let init = Instant::now();
    run_quiet(
        Command::new(&pgbench)
            .args(["-i", "-q", "-s", &args.scale.to_string(), "-h", cluster.host(), "-U", "postgres"])
            .arg("-p")
            .arg(cluster.port().to_string())
            .arg("postgres"),
    )?;
    let pgbench_init_s = init.elapsed().as_secs_f64();
    cluster.sql("CHECKPOINT")?;
    let database_bytes: u64 = cluster
        .sql("select sum(pg_database_size(oid))::bigint from pg_database")?
        .trim()
        .parse()
        .context("parsing the database size")?;
    progress(&format!(
        "PostgreSQL {server_version}: {:.0} MB of databases after {pgbench_init_s:.0} s of pgbench -i",
        database_bytes as f64 / 1e6
    ));

    let conninfo = format!("host={} port={} user=postgres dbname=postgres", cluster.host(), cluster.port());
    let mut samples = Vec::new();
    let mut ours_reports = Vec::new();
    for round in 1..=args.rounds {
        let mut last_plain_bytes = None;
        for op in Op::ROUND {
            let dir = backup_root.join(format!("round{round}-{op:?}"));
            let (m, bytes) = match op {
                Op::OursNull | Op::OursDir => {
                    let report_file = backup_root.join("ours-report.json");
                    let mut cmd: Vec<OsString> = vec![
                        std::env::current_exe()?.into(),
                        "run-ours".into(),
                        "--conninfo".into(),
                        conninfo.clone().into(),
                        "--report".into(),
                        report_file.clone().into(),
                        "--runtime".into(),
                        format!("{:?}", args.ours_runtime).to_lowercase().into(),
                        "--sink".into(),
                    ];
                    if op == Op::OursNull {
                        cmd.push("null".into());
                    } else {
                        cmd.extend(["dir".into(), "--dir".into(), dir.clone().into()]);
                    }
                    let m = measured(&cmd, true, &backup_root)?;
                    let report: OursReport = serde_json::from_slice(&std::fs::read(&report_file)?)
                        .context("parsing run-ours' report")?;
                    let bytes = report.bytes;
                    ours_reports.push(report);
                    (m, bytes)
                }
                Op::PgBasebackupTar => {
                    let cmd = pg_basebackup_cmd(&pg_basebackup, &conninfo, &["-D", "-", "-Ft"]);
                    let m = measured(&cmd, true, &backup_root)?;
                    // Same data as the plain backup of this round; fixed below once it is known.
                    (m, 0)
                }
                Op::PgBasebackupDir => {
                    let d = dir.to_string_lossy().into_owned();
                    let cmd = pg_basebackup_cmd(&pg_basebackup, &conninfo, &["-D", &d, "-Fp"]);
                    let m = measured(&cmd, true, &backup_root)?;
                    let bytes = tree_bytes(&dir)?;
                    last_plain_bytes = Some(bytes);
                    (m, bytes)
                }
            };
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            let sample = Sample::new(op, round, &m, bytes);
            log_sample(&sample, &m);
            samples.push(sample);
        }
        // pg_basebackup's tar went to /dev/null: its rate uses the size of the same round's plain
        // backup (the same files; tar headers and padding excluded, as in every other line).
        if let Some(bytes) = last_plain_bytes {
            for s in samples.iter_mut().filter(|s| s.round == round && s.op == Op::PgBasebackupTar) {
                s.bytes = bytes;
                s.mb_per_s = bytes as f64 / 1e6 / s.wall_s;
            }
        }
    }

    let summary = summarize(&samples);
    let table = render_table(&summary);
    print_table(&format!(
        "PostgreSQL {server_version}, pgbench scale {} ({:.0} MB of databases), {} rounds, data checksums \
         {}, our runtime {:?}, backups in {}\n{table}",
        args.scale,
        database_bytes as f64 / 1e6,
        args.rounds,
        on_off(args.checksums),
        args.ours_runtime,
        args.backup_root.display()
    ));
    if let Some(path) = &args.json {
        let results = Results {
            tool: "pgplakar-bench",
            version: env!("CARGO_PKG_VERSION"),
            major: args.major,
            server_version,
            scale: args.scale,
            rounds: args.rounds,
            data_checksums: args.checksums,
            ours_runtime: args.ours_runtime,
            database_bytes,
            pgbench_init_s,
            backup_root: backup_root.clone(),
            cluster_dir: cluster.cluster_dir().to_path_buf(),
            summary,
            samples,
            ours_reports,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        progress(&format!("results written to {}", path.display()));
    }
    drop(cluster);
    scratch.close().context("removing the backup directories")?;
    Ok(())
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// `pg_basebackup -d <conninfo> -X fetch -c fast -w <extra>`.
fn pg_basebackup_cmd(bin: &Path, conninfo: &str, extra: &[&str]) -> Vec<OsString> {
    let mut cmd: Vec<OsString> = vec![bin.into(), "-d".into(), conninfo.into()];
    cmd.extend(["-X", "fetch", "-c", "fast", "-w"].iter().map(OsString::from));
    cmd.extend(extra.iter().map(OsString::from));
    cmd
}

fn log_sample(s: &Sample, m: &Measured) {
    // pg_basebackup's tar gets its size from the plain backup that follows it.
    let rate = if s.bytes == 0 { "  (later)".to_owned() } else { format!("{:>7.0} MB/s", s.mb_per_s) };
    progress(&format!(
        "round {} {:<36} {:>7.2} s {rate}  peak RSS {:>7.1} MiB  CPU {:.2}+{:.2} s",
        s.round,
        s.op.label(),
        s.wall_s,
        m.max_rss_kib as f64 / 1024.0,
        s.user_s,
        s.sys_s
    ));
}

/// Runs a setup command, failing with its output's tail.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{cmd:?} failed ({}): {tail}", out.status);
    }
    Ok(())
}

/// Total size of the regular files under `dir` (symbolic links not followed).
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_bytes_counts_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        assert_eq!(tree_bytes(dir.path()).unwrap(), 15);
    }

    #[test]
    fn pg_basebackup_command_matches_the_documented_one() {
        let cmd = pg_basebackup_cmd(Path::new("/bin/pg_basebackup"), "host=h", &["-D", "-", "-Ft"]);
        assert_eq!(crate::measure::show(&cmd), "/bin/pg_basebackup -d host=h -X fetch -c fast -w -D - -Ft");
    }
}
