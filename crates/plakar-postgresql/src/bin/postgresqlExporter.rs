//! `postgresqlExporter`: the Plakar exporter for `postgres://` (logical restores with
//! `pg_restore` and `psql`).
#![allow(non_snake_case)]

use plakar_postgresql::{Connector, logical};

fn main() {
    plakar_postgresql::sweep_stale_files();
    plakar_plugin::run_exporter(Connector::Exporter.executable(), logical::ExporterFactoryImpl);
}
