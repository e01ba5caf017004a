//! Generates the gRPC code for Plakar's importer and exporter services from the project's own
//! `.proto` files, with `protox` (pure Rust) instead of `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/connectors.proto", "proto/importer.proto", "proto/exporter.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().bytes(".").build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
