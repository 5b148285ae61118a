//! Generates the protobuf types from `proto/*.proto` with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/handshake.proto",
        "proto/cert.proto",
        "proto/client_payload.proto",
        "proto/adv.proto",
        "proto/companion_reg.proto",
        "proto/e2e.proto",
        "proto/signal.proto",
        "proto/mms_retry.proto",
        "proto/history_sync.proto",
        "proto/sync_action.proto",
        "proto/server_sync.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
