//! Client code for the test host, generated from the same `.proto` files as the plugins (the
//! only thing the host shares with them).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../crates/plakar-plugin/proto";
    let protos =
        [format!("{dir}/connectors.proto"), format!("{dir}/importer.proto"), format!("{dir}/exporter.proto")];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(&protos, [dir])?;
    tonic_prost_build::configure().bytes(".").build_server(false).build_client(true).compile_fds(fds)?;
    Ok(())
}
