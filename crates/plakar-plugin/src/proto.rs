//! The generated protobuf messages and gRPC services.
//!
//! Generated at build time from `proto/*.proto` (the project's own files, written from the
//! contract) with `protox` and `tonic-prost-build`. `bytes` fields are [`bytes::Bytes`]. The
//! module tree mirrors the proto packages, since generated code refers to other packages by
//! relative paths.
#![allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]

/// `package plakar.*`.
pub mod plakar {
    /// `package plakar.connectors;`: `FileInfo`, `Record`, `Result`.
    pub mod connectors {
        tonic::include_proto!("plakar.connectors");
    }

    /// `package plakar.exporter;`: the `Exporter` service.
    pub mod exporter {
        tonic::include_proto!("plakar.exporter");
    }
}

/// `package importer;`: the `Importer` service.
pub mod importer {
    tonic::include_proto!("importer");
}

pub use plakar::{connectors, exporter};
