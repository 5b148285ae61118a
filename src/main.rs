//! The `wa-gateway` command line.
//!
//! Until the service exists, the binary offers what the protocol core can do on its own.

use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use wa_gateway::binary::decode_frame;
use wa_gateway::util::hex;

#[derive(Parser)]
#[command(
    name = "wa-gateway",
    version,
    about = "Pure-Rust WhatsApp multi-device gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decodes a hex-encoded binary-node frame (flags byte first) and prints it as XML.
    Decode {
        /// The frame in hex, e.g. 00f8029df801f803ec0e04ec11.
        frame_hex: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { frame_hex } => {
            let Some(bytes) = hex::decode(frame_hex.trim()) else {
                eprintln!("error: frame is not hex");
                return ExitCode::from(2);
            };
            match decode_frame(Bytes::from(bytes)) {
                Ok(node) => {
                    println!("{node}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
