//! `postgresqlImporter`: the Plakar importer for `postgres://` (logical backups with `pg_dump`,
//! `/manifest.json` first).
#![allow(non_snake_case)]

use plakar_postgresql::{Connector, logical};

fn main() {
    plakar_postgresql::sweep_stale_files();
    plakar_plugin::run_importer(Connector::Importer.executable(), logical::ImporterFactoryImpl);
}
