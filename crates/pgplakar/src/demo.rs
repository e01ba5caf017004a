//! `pgplakar demo`: the main job on a throwaway local cluster — sample data, a physical backup
//! with the project's own client, verification against backup_manifest, the restored copy
//! started by a stock `postgres`, and the data compared.

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
            Ok(r) => println!("   {} files, {} checksums: all match", r.files_verified, r.checksums_verified),
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
    println!("done: backup, verification and restore of PostgreSQL {major} succeeded");
    Ok(())
}
