//! `postgresqlBinImporter`: the Plakar importer for `postgres+bin://` (a physical base backup
//! taken with the project's own replication client, `/manifest.json` first).
#![allow(non_snake_case)]

use plakar_postgresql::{Connector, physical};

fn main() {
    plakar_postgresql::sweep_stale_files();
    plakar_plugin::run_importer(Connector::BinImporter.executable(), physical::Factory);
}
