//! `pgplakar demo`: the main job on a throwaway local cluster.

use anyhow::{Context, Result};
use pg_testkit::{ClusterOptions, TestCluster};

/// Options of `pgplakar demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// PostgreSQL major version of the throwaway cluster (12 to 18).
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u32).range(12..=18))]
    major: u32,
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    tracing::info!("starting a throwaway PostgreSQL {} cluster", args.major);
    let cluster = TestCluster::start_with(args.major, ClusterOptions::new())
        .context("could not start a throwaway cluster (run scripts/setup-postgres first)")?;
    let version = cluster.sql("select version()")?;
    println!("server:      {version}");
    println!("connection:  {}", cluster.conninfo("postgres"));
    println!("data dir:    {}", cluster.data_dir().display());
    drop(cluster);
    tracing::info!("cluster stopped and removed");
    Ok(())
}
