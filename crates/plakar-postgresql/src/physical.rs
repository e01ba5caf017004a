//! `postgresqlBinImporter`: `postgres+bin://` → `/manifest.json` then the base backup.

use backup_plan::{CancellationToken, Kind, Plan};
use pg_physical::{BackupOptions, RunOptions};
use plakar_plugin::import::PlakarSink;
use plakar_plugin::{FLAG_NEEDACK, FLAG_STREAM, ImportJob, ImporterFactory, InitArgs, InitInfo};

use crate::{ConfigMap, Connection, Connector, connection};

/// `Type()` of the Go physical importer, kept so that snapshots of either pick each other as
/// parents.
pub const TYPE: &str = "postgres+bin";

/// Builds the importer from `Init`.
#[derive(Debug, Default)]
pub struct Factory;

/// A configured physical importer.
#[derive(Debug)]
pub struct Job {
    conn: Connection,
}

/// `Init`'s answer for a connection: type `postgres+bin`, origin `host:port`, root `/`, flags
/// STREAM | NEEDACK (as the Go plugin).
pub fn init_info(conn: &Connection) -> Result<InitInfo, String> {
    Ok(InitInfo {
        origin: conn.origin()?,
        r#type: TYPE.into(),
        root: "/".into(),
        flags: FLAG_STREAM | FLAG_NEEDACK,
    })
}

impl ImporterFactory for Factory {
    type Job = Job;

    async fn init(&self, args: InitArgs) -> Result<(InitInfo, Job), String> {
        let map = ConfigMap::new(args.config, Connector::BinImporter)?;
        let conn = connection(&map, Kind::Physical)?;
        let info = init_info(&conn)?;
        Ok((info, Job { conn }))
    }
}

impl ImportJob for Job {
    async fn run(&self, sink: &mut PlakarSink, cancel: CancellationToken) -> Result<(), String> {
        let mut plan = Plan::physical(
            self.conn.location.config.clone(),
            BackupOptions::default(),
            RunOptions::default(),
            true,
        )
        .map_err(|e| backup_plan::chain(&e))?;
        match plan.run(sink, &cancel).await {
            Ok(report) => {
                if let Some(p) = report.physical() {
                    tracing::info!("base backup done: {:?}", p.summary);
                }
                Ok(())
            }
            Err(e) => Err(backup_plan::chain(&e)),
        }
    }

    async fn ping(&self) -> Result<(), String> {
        pg_conn::Client::connect(&self.conn.location.config)
            .await
            .map(drop)
            .map_err(|e| format!("cannot connect: {e}"))
    }
}
