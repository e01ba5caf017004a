//! `postgresqlImporter` and `postgresqlExporter`: `postgres://` through [`pg_logical`] (option
//! map, checks, `pg_dump` family) and [`backup_plan::Plan::logical`].

use backup_plan::{CancellationToken, Plan};
use pg_logical::{BackupOptions, RestoreOptions, Restorer};
use plakar_plugin::export::{ExportEntries, ExportError};
use plakar_plugin::import::PlakarSink;
use plakar_plugin::mode::GoKind;
use plakar_plugin::{
    ExportJob, ExporterFactory, FLAG_STREAM, ImportJob, ImporterFactory, InitArgs, InitInfo,
};

/// `Type()` of the Go logical connectors.
pub const TYPE: &str = "postgresql";

fn origin(config: &pg_config::Config) -> Result<String, String> {
    let resolved = config.resolve().map_err(|e| format!("connection settings: {e}"))?;
    Ok(resolved
        .targets
        .first()
        .map(|t| format!("{}:{}", t.host_text(), t.port))
        .unwrap_or_else(|| format!("{}:{}", pg_config::DEFAULT_HOST, pg_config::DEFAULT_PORT)))
}

/// Builds the logical importer from `Init`.
#[derive(Debug, Default)]
pub struct ImporterFactoryImpl;

/// A configured logical importer.
#[derive(Debug)]
pub struct Importer {
    options: BackupOptions,
}

impl ImporterFactory for ImporterFactoryImpl {
    type Job = Importer;

    async fn init(&self, args: InitArgs) -> Result<(InitInfo, Importer), String> {
        let options = BackupOptions::from_map(&args.config).map_err(|e| e.to_string())?;
        let info = InitInfo {
            origin: origin(&options.connection.config)?,
            r#type: TYPE.into(),
            root: "/".into(),
            flags: FLAG_STREAM,
        };
        Ok((info, Importer { options }))
    }
}

impl ImportJob for Importer {
    async fn run(&self, sink: &mut PlakarSink, cancel: CancellationToken) -> Result<(), String> {
        // A plan that cannot be made (server unreachable, database missing, tools too old)
        // is returned as an error: the runtime aborts the import with it before `finished`.
        let mut plan = Plan::logical(&self.options, true).await.map_err(|e| backup_plan::chain(&e))?;
        plan.run(sink, &cancel).await.map(drop).map_err(|e| backup_plan::chain(&e))
    }

    async fn ping(&self) -> Result<(), String> {
        pg_conn::Client::connect(&self.options.connection.config)
            .await
            .map(drop)
            .map_err(|e| format!("cannot connect: {e}"))
    }
}

/// Builds the logical exporter from `Init`.
#[derive(Debug, Default)]
pub struct ExporterFactoryImpl;

/// A configured logical exporter.
#[derive(Debug)]
pub struct Exporter {
    options: RestoreOptions,
}

impl ExporterFactory for ExporterFactoryImpl {
    type Job = Exporter;

    async fn init(&self, args: InitArgs) -> Result<(InitInfo, Exporter), String> {
        let options = RestoreOptions::from_map(&args.config).map_err(|e| e.to_string())?;
        let info = InitInfo {
            origin: origin(&options.connection.config)?,
            r#type: TYPE.into(),
            root: "/".into(),
            flags: 0,
        };
        Ok((info, Exporter { options }))
    }
}

impl ExportJob for Exporter {
    async fn run(&self, entries: &mut ExportEntries, cancel: CancellationToken) -> Result<(), String> {
        tokio::select! {
            r = self.restore(entries) => r,
            () = cancel.cancelled() => Err("the restore was cancelled".into()),
        }
    }

    async fn ping(&self) -> Result<(), String> {
        pg_conn::Client::connect(&self.options.connection.config)
            .await
            .map(drop)
            .map_err(|e| format!("cannot connect: {e}"))
    }
}

impl Exporter {
    async fn restore(&self, entries: &mut ExportEntries) -> Result<(), String> {
        let mut restorer = Restorer::new(self.options.clone()).await.map_err(|e| e.to_string())?;
        let mut failed = Vec::new();
        while let Some(entry) = entries.next().await.map_err(|e| e.to_string())? {
            let path = entry.path().to_owned();
            if !entry.record.error.is_empty() {
                let msg = format!("the snapshot has an error for this entry: {}", entry.record.error);
                entries.fail(msg.clone());
                failed.push(format!("{path}: {msg}"));
                continue;
            }
            if entry.record.is_xattr {
                entries.fail("extended attributes are not restored");
                continue;
            }
            let is_dir = entry.kind() == GoKind::Directory;
            if !is_dir && entry.kind() != GoKind::Regular {
                let msg = "not a file of a logical backup".to_owned();
                entries.fail(msg.clone());
                failed.push(format!("{path}: {msg}"));
                continue;
            }
            restorer.begin(&path, is_dir).await.map_err(|e| e.to_string())?;
            if is_dir {
                continue;
            }
            {
                loop {
                    match entries.chunk().await {
                        Ok(Some(chunk)) => restorer.data(&chunk).await.map_err(|e| e.to_string())?,
                        Ok(None) => break,
                        Err(e @ ExportError::Truncated(_)) => {
                            restorer.abort_file();
                            return Err(e.to_string());
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            match restorer.end().await.map_err(|e| e.to_string())? {
                Ok(_) => {}
                Err(msg) => {
                    entries.fail(msg.clone());
                    failed.push(format!("{path}: {msg}"));
                }
            }
        }
        // The deferred parts of dumps that came before globals.sql are restored now; their
        // failures fail the restore too (the entries' results are already sent).
        let report = restorer.finish().await;
        for (p, m) in report.failures() {
            let line = format!("{p}: {m}");
            if !failed.contains(&line) {
                failed.push(line);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("{} file(s) not restored: {}", failed.len(), failed.join("; ")))
        }
    }
}
