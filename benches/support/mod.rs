//! What the simulator-driven benches share: the simulator's control API over plain HTTP/1.1,
//! client options from the line `wa-gateway simulate` prints, and this process's CPU time.
// Each bench uses a different subset.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wa_gateway::client::payload::ClientProfile;
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{ClientOptions, Keepalive};
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::tls::{client_config, parse_ca_pem};
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::util::clock::SystemClock;

/// User + system CPU time of this process.
pub fn cpu() -> Duration {
    cpu_of("self")
}

/// User + system CPU time of process `pid` (`self` for this one).
pub fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 counting from the
    // state (field 3). Indexed, not filtered: a field such as tpgid may be -1 (no terminal).
    let f: Vec<&str> = rest.split(' ').collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// POSTs `body` (JSON) to the control API at `base`; the status and the response body.
pub async fn post_json(base: &str, path: &str, body: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// POSTs `body` (JSON) to the control API at `base`; the status.
pub async fn post(base: &str, path: &str, body: &str) -> u16 {
    post_json(base, path, body).await.0
}

/// Client options for the simulator that printed `sim_line`, and its control URL. With
/// `simulate --tls`, the CA it printed is trusted (webpki roots besides).
pub fn options(sim_line: &str) -> (ClientOptions, String) {
    let info: serde_json::Value = serde_json::from_str(sim_line).unwrap();
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(info["root_public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let tls = info["ca_cert"].as_str().map(|path| {
        let pem = std::fs::read(path).unwrap();
        client_config(&parse_ca_pem(&pem).unwrap()).unwrap()
    });
    let opts = ClientOptions {
        socket: ClientConfig {
            url: info["ws_url"].as_str().unwrap().to_owned(),
            trust: TrustRoot::from_key(root),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls,
        },
        profile: ClientProfile::default(),
        backoff: Backoff::default(),
        keepalive: Keepalive::default(),
        messaging: Default::default(),
        label: String::new(),
    };
    (opts, info["control_url"].as_str().unwrap().to_owned())
}

/// A number from the environment, or `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
