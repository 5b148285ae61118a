//! Marginal memory of an idle connected client: RSS of this process with N clients logged in to
//! `wa-gateway simulate` (run as a separate process, so its memory is not counted) minus RSS
//! with none, divided by N. Run: `cargo bench --bench idle_rss` (N = 100, or IDLE_RSS_N).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wa_gateway::client::payload::ClientProfile;
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{Client, ClientOptions, ConnState, Event, Keepalive, MemoryCreds};
use wa_gateway::socket::conn::DEFAULT_MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::util::clock::SystemClock;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn post(base: &str, path: &str, body: &str) -> u16 {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp[9..12].parse().unwrap()
}

fn main() {
    let n: usize = std::env::var("IDLE_RSS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
            .args(["simulate"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
        let info: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let ws_url = info["ws_url"].as_str().unwrap().to_owned();
        let control = info["control_url"].as_str().unwrap().to_owned();
        let root: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(info["root_public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let opts = ClientOptions {
            socket: ClientConfig {
                url: ws_url,
                trust: TrustRoot::from_key(root),
                clock: Arc::new(SystemClock),
                max_frame: DEFAULT_MAX_FRAME,
            },
            profile: ClientProfile::default(),
            backoff: Backoff::default(),
            keepalive: Keepalive::default(),
        };
        // Warm up allocator and runtime with one client that is then stopped.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib();
        let mut clients = Vec::new();
        for i in 0..n {
            let (mut client, mut events) = Client::start(opts.clone(), Arc::new(MemoryCreds::default()));
            let code = loop {
                if let Some(Event::QrCode { code, .. }) = events.recv().await {
                    break code;
                }
            };
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            let body = serde_json::json!({ "qr": code }).to_string();
            assert_eq!(post(&control, &format!("/phones/1555{i:07}/scan"), &body).await, 200);
            client.wait_for(|s| *s == ConnState::Connected).await;
            clients.push(client);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib();
        println!(
            "idle_rss: N={n} rss_before={before} KiB rss_after={after} KiB marginal={:.1} KiB per connected idle client",
            (after.saturating_sub(before)) as f64 / n as f64
        );
        drop(clients);
        let _ = sim.kill().await;
    });
}
