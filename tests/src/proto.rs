//! The generated client code (from the plugins' `.proto` files).
#![allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]

/// `package plakar.*`.
pub mod plakar {
    /// `package plakar.connectors;`.
    pub mod connectors {
        tonic::include_proto!("plakar.connectors");
    }
    /// `package plakar.exporter;`.
    pub mod exporter {
        tonic::include_proto!("plakar.exporter");
    }
}

/// `package importer;`.
pub mod importer {
    tonic::include_proto!("importer");
}

pub use plakar::{connectors, exporter};
