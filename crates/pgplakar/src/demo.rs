//! `pgplakar demo`: the main job on a throwaway local cluster — sample data; a physical backup
//! with the project's own client, verified against backup_manifest, its restored copy started
//! by a stock `postgres` and the data compared; a logical backup (pg_dump through pg-logical)
//! restored into a second throwaway cluster and compared; a short report with sizes, times and
//! rates. Every cluster and file is gone when it returns (the test kit's clusters and scratch
//! directories are removed on drop, also on failure).

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use backup_plan::{CancellationToken, Plan};
use dir_sink::{DirSink, DirSinkOptions};
use pg_physical::{BackupOptions, RunOptions};
use pg_testkit::{ClusterOptions, ScratchDir, TestCluster};

/// Options of `pgplakar demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// PostgreSQL major version of the throwaway cluster (12 to 18).
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u32).range(12..=18))]
    major: u32,
    /// Rows of sample data.
    #[arg(long, default_value_t = 200_000)]
    rows: u32,
}

const SAMPLE: &str = "
    create table accounts (id int primary key, owner text, balance numeric);
    insert into accounts select g, md5(g::text), g % 1000 from generate_series(1, {rows}) g;
    create table archived tablespace demo_ts as select g as id, repeat(md5(g::text), 4) as blob
        from generate_series(1, {rows} / 10) g;
    create unlogged table scratch as select g from generate_series(1, 1000) g;
    select lo_from_bytea(4242, 'a large object');
";

/// A fingerprint of the data: row counts and an md5 of each table's rows in key order.
const FINGERPRINT: &str = "
    select (select count(*) from accounts) || ' ' ||
           (select md5(string_agg(a::text, ',' order by id)) from accounts a) || ' ' ||
           (select count(*) from archived) || ' ' ||
           (select md5(string_agg(b::text, ',' order by id)) from archived b) || ' ' ||
           encode(lo_get(4242), 'escape')";

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let major = args.major;
    println!("1. starting a throwaway PostgreSQL {major} cluster with sample data");
    let source = TestCluster::start_with(major, ClusterOptions::new().checksums(true))
        .context("could not start a throwaway cluster (run scripts/setup-postgres first)")?;
    source.create_tablespace("demo_ts")?;
    source.sql(&SAMPLE.replace("{rows}", &args.rows.to_string()))?;
    println!("   {}", source.sql("select version()")?);

    let scratch = ScratchDir::new()?;
    let pgdata = scratch.path().join("pgdata");
    println!("2. physical backup with pg_plakar's own replication client into {}", pgdata.display());
    let config = pg_config::Config::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        source.port()
    ))?;
    let started = Instant::now();
    let mut sink = DirSink::create(DirSinkOptions::new(&pgdata))?;
    let mut plan = Plan::physical(config, BackupOptions::default(), RunOptions::default(), false)?;
    let report = crate::runtime()?.block_on(plan.run(&mut sink, &CancellationToken::new()))?;
    let report = report.physical().context("the plan had no physical step")?;
    let elapsed = started.elapsed();
    println!(
        "   {} files, {:.1} MB in {:.2?} ({:.0} MB/s), {} files verified against backup_manifest while streaming",
        report.summary.files,
        report.summary.bytes as f64 / 1e6,
        elapsed,
        report.summary.bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        report.summary.verified_files
    );

    if major >= 13 {
        println!("3. verifying the directory against its backup_manifest");
        let manifest = std::fs::read(pgdata.join("backup_manifest"))?;
        match pg_backup_manifest::verify_directory(&pgdata, &manifest) {
            Ok(r) => println!(
                "   {} files, {} checksums, {} WAL records: all match",
                r.files_verified, r.checksums_verified, r.wal_records_verified
            ),
            Err(m) => bail!("the restored directory does not match its manifest: {m:?}"),
        }
    } else {
        println!("3. PostgreSQL 12 sends no backup_manifest: every file was checked against its tar header");
    }

    println!("4. starting a stock PostgreSQL {major} on the restored copy");
    pg_testkit::give_to_server_user(scratch.path())?;
    let restored = TestCluster::start_existing(major, &pgdata, ClusterOptions::new())?;
    ensure!(restored.sql("select pg_is_in_recovery()")? == "f", "the restored cluster is still in recovery");

    println!("5. comparing the data");
    let before = source.sql(FINGERPRINT)?;
    let after = restored.sql(FINGERPRINT)?;
    ensure!(before == after, "the restored data differs:\n  source:   {before}\n  restored: {after}");
    let scratch_rows = restored.sql("select count(*) from scratch")?;
    println!("   accounts, archived (in a tablespace) and the large object are identical");
    println!(
        "   the unlogged table came back empty, as PostgreSQL does after a restore ({scratch_rows} rows)"
    );

    println!("6. logical backup (pg_dump of database postgres, through pg-logical) into a directory");
    let logical_dir = scratch.path().join("logical");
    let (logical_bytes, logical_files, logical_time) = logical_backup(&source, &logical_dir)?;
    println!(
        "   {logical_files} files, {:.1} MB in {logical_time:.2?} ({:.0} MB/s)",
        logical_bytes as f64 / 1e6,
        logical_bytes as f64 / 1e6 / logical_time.as_secs_f64()
    );
    println!("7. restoring it into a second throwaway PostgreSQL {major} and comparing the data");
    let target = TestCluster::start(major)?;
    target.create_tablespace("demo_ts")?;
    target.sql("create database demo_restore")?;
    let restore_time = logical_restore(&target, &logical_dir)?;
    let restored_logical = target.sql_db("demo_restore", FINGERPRINT)?;
    ensure!(
        before == restored_logical,
        "the logically restored data differs:\n  source:   {before}\n  restored: {restored_logical}"
    );
    println!("   accounts, archived and the large object are identical (restore took {restore_time:.2?})");

    println!();
    println!("report (PostgreSQL {major}, {} rows of sample data):", args.rows);
    println!("  {:<34} {:>10} {:>8} {:>10} {:>9}", "", "size", "files", "time", "rate");
    let line = |what: &str, bytes: u64, files: u64, t: std::time::Duration| {
        println!(
            "  {what:<34} {:>7.1} MB {files:>8} {:>9.2}s {:>5.0} MB/s",
            bytes as f64 / 1e6,
            t.as_secs_f64(),
            bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
        )
    };
    line("physical backup (verified)", report.summary.bytes, report.summary.files, elapsed);
    line("logical backup (pg_dump)", logical_bytes, logical_files, logical_time);
    println!(
        "  {:<34} {:>10} {:>8} {:>9.2}s",
        "logical restore (pg_restore)",
        "",
        "",
        restore_time.as_secs_f64()
    );
    drop(restored);
    drop(target);
    drop(source);
    drop(scratch);
    println!(
        "done: physical and logical backups of PostgreSQL {major} restored and checked; nothing left running or on disk"
    );
    Ok(())
}

/// Client tool directories the test kit installed (14-18), for pg-logical's tool choice.
fn tool_dirs() -> Vec<std::path::PathBuf> {
    (14..=18)
        .filter_map(|m| pg_testkit::client_bin_for_major("pg_dump", m).ok())
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect()
}

fn logical_backup(source: &TestCluster, dir: &std::path::Path) -> Result<(u64, u64, std::time::Duration)> {
    let mut map = std::collections::BTreeMap::new();
    map.insert(
        "location".to_owned(),
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", source.port()),
    );
    let mut options = pg_logical::BackupOptions::from_map(&map)?;
    options.connection.tool_search = pg_logical::ToolSearch::dirs(tool_dirs());
    let started = Instant::now();
    let rt = crate::runtime()?;
    let mut plan = rt.block_on(Plan::logical(&options, true))?;
    let mut sink = dir_sink::TreeSink::create(dir)?;
    rt.block_on(plan.run(&mut sink, &CancellationToken::new()))?;
    let stats = sink.stats().clone();
    Ok((stats.bytes, stats.files, started.elapsed()))
}

fn logical_restore(target: &TestCluster, dir: &std::path::Path) -> Result<std::time::Duration> {
    let mut map = std::collections::BTreeMap::new();
    map.insert(
        "location".to_owned(),
        format!("postgres://postgres@127.0.0.1:{}/demo_restore?sslmode=disable", target.port()),
    );
    let mut options = pg_logical::RestoreOptions::from_map(&map)?;
    options.connection.tool_search = pg_logical::ToolSearch::dirs(tool_dirs());
    let started = Instant::now();
    let rt = crate::runtime()?;
    let report = rt.block_on(async {
        let mut restorer = pg_logical::Restorer::new(options).await?;
        // The database dump; globals.sql (roles, the tablespace) is not replayed: the target
        // has them, and its tablespace must not point at the source's directory.
        let dump = dir.join("postgres.dump");
        let file = tokio::fs::File::open(&dump).await?;
        restorer.restore_reader("/postgres.dump", file).await?.map_err(anyhow::Error::msg)?;
        anyhow::Ok(restorer.finish().await)
    })?;
    if let Some((path, e)) = report.failures().next() {
        bail!("restoring {path} failed: {e}");
    }
    Ok(started.elapsed())
}
