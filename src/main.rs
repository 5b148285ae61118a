//! The `wa-gateway` command line.
//!
//! Until the service exists, the binary offers what the protocol core can do on its own.

use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use wa_gateway::binary::decode_frame;
use wa_gateway::util::hex;

/// Starts the simulator and its control API, prints where they are, runs until SIGINT/SIGTERM.
/// With `tls`, it serves `wss://` and writes its CA certificate to `ca_out` (printed as
/// `ca_cert`; give it to clients as `WA_GATEWAY_WS_CA`).
fn simulate(
    listen: std::net::SocketAddr,
    control: std::net::SocketAddr,
    tls: bool,
    ca_out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use base64::Engine;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let sim = if tls {
            wa_gateway::sim::Simulator::start_tls(listen).await?
        } else {
            wa_gateway::sim::Simulator::start(listen).await?
        };
        let ca_path = match sim.ca_cert_pem() {
            Some(pem) => {
                let path = ca_out.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("wa-gateway-sim-{}-ca.pem", std::process::id()))
                });
                std::fs::write(&path, pem)?;
                Some(path)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(control).await?;
        let control_url = format!("http://{}", listener.local_addr()?);
        let mut line = serde_json::json!({
            "ws_url": sim.ws_url(),
            "control_url": control_url,
            "root_public_key": base64::engine::general_purpose::STANDARD.encode(sim.root_public_key()),
        });
        if let Some(p) = &ca_path {
            line["ca_cert"] = serde_json::Value::String(p.display().to_string());
        }
        println!("{line}");
        use std::io::Write;
        std::io::stdout().flush()?;
        let app = wa_gateway::sim::control::router(sim);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        Ok(())
    })
}

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
    /// Runs the offline WhatsApp simulator; prints one JSON line with its URLs and root key.
    Simulate {
        /// WebSocket listen address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Control API listen address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        control: std::net::SocketAddr,
        /// Serve `wss://` with a certificate from a CA generated at start.
        #[arg(long)]
        tls: bool,
        /// Where to write that CA's PEM (default: the temp directory).
        #[arg(long, requires = "tls")]
        ca_out: Option<std::path::PathBuf>,
    },
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
        Command::Simulate {
            listen,
            control,
            tls,
            ca_out,
        } => match simulate(listen, control, tls, ca_out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
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
