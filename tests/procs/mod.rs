//! What the tests that run the real binaries share: starting `simulate` and `serve` as child
//! processes, the service's REST calls, and a look at its data directory's media store.

// Each test binary that includes this uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_wa-gateway");
pub const SECRET: &str = "crash-test-secret-of-at-least-32-bytes";

/// Starts a process and returns it with the first stdout line that parses as JSON and has
/// `key`.
pub async fn start(cmd: &mut Command, key: &str) -> (Child, Value) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let Some(line) = lines.next_line().await.unwrap() else {
            // It ended before saying it was up: say how, so a failure here can be read.
            panic!("{cmd:?} exited first: {:?}", child.wait().await);
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v.get(key).is_some()
        {
            // Keep reading in the background so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, v);
        }
    }
}

/// `wa-gateway serve` over data directory `dir`, against the simulator `sim` describes.
pub fn serve(dir: &Path, sim: &Value) -> Command {
    let mut c = Command::new(BIN);
    c.arg("serve")
        .env("WA_GATEWAY_BIND", "127.0.0.1:0")
        .env("WA_GATEWAY_DATA_DIR", dir)
        .env("WA_GATEWAY_JWT_SECRET", SECRET)
        .env("WA_GATEWAY_WS_URL", sim["ws_url"].as_str().unwrap())
        .env(
            "WA_GATEWAY_ROOT_KEY",
            sim["root_public_key"].as_str().unwrap(),
        )
        // The CDN's certificate comes from the simulator's own CA.
        .env("WA_GATEWAY_WS_CA", sim["ca_cert"].as_str().unwrap())
        .env("WA_GATEWAY_UNLIMITED_SUBACCOUNTS", "sub")
        // The webhook receiver runs on loopback, as a deployment's own-network receiver would.
        .env("WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE", "1")
        .env("RUST_LOG", "warn");
    c
}

pub async fn until<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    until_within(what, Duration::from_secs(60), f).await
}

pub async fn until_within<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An admin token for every subaccount.
pub fn admin_token() -> String {
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "--role",
            "admin",
            "--subaccounts",
            "*",
            "--ttl",
            "1h",
        ])
        .env("WA_GATEWAY_JWT_SECRET", SECRET)
        .output()
        .unwrap()
        .stdout;
    String::from_utf8(out).unwrap().trim().to_owned()
}

/// The service's agent API (`…/api/whatsapp/sub/agent`) and the simulator's control API.
#[derive(Clone)]
pub struct Apis {
    pub http: reqwest::Client,
    pub token: String,
    pub api: String,
    pub control: String,
}

impl Apis {
    pub fn new(listening: &Value, sim: &Value) -> Apis {
        Apis {
            http: reqwest::Client::new(),
            token: admin_token(),
            api: format!(
                "{}/api/whatsapp/sub/agent",
                listening["listening"].as_str().unwrap()
            ),
            control: sim["control_url"].as_str().unwrap().to_owned(),
        }
    }

    /// The same APIs with the service at its new address (after a restart).
    pub fn at(&self, listening: &Value) -> Apis {
        Apis {
            api: format!(
                "{}/api/whatsapp/sub/agent",
                listening["listening"].as_str().unwrap()
            ),
            ..self.clone()
        }
    }

    /// POSTs JSON (the token goes along; the control API ignores it): status and JSON answer.
    pub async fn post(&self, url: String, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    /// GETs JSON; None when the service is not answering.
    pub async fn get(&self, url: String) -> Option<Value> {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// Links the agent to phone `me` (a scan of its QR) and waits until it is connected.
    pub async fn link(&self, me: &str) {
        let (code, v) = self.post(format!("{}/connect", self.api), json!({})).await;
        assert_eq!(code, 200, "{v}");
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        let (code, _) = self
            .post(
                format!("{}/phones/{me}/scan", self.control),
                json!({ "qr": qr }),
            )
            .await;
        assert_eq!(code, 200);
        self.connected().await;
    }

    pub async fn connected(&self) {
        until("connected", async || {
            let v = self.get(format!("{}/status", self.api)).await?;
            (v["data"]["isConnected"] == json!(true)).then_some(())
        })
        .await;
    }

    /// Waits until phone `from` reaches our account `me` (our prekeys are on the server once
    /// linking is done, a moment after): a text of his is in our history.
    pub async fn reachable(&self, from: &str, me: &str) {
        let mut probe = 0;
        until("the phone reaches us", async || {
            probe += 1;
            let (code, v) = self
                .post(
                    format!("{}/phones/{from}/send", self.control),
                    json!({ "to": me, "text": format!("probe {probe}") }),
                )
                .await;
            assert_eq!(code, 200, "{v}");
            let id = v["id"].as_str()?.to_owned();
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.message(&id).await.map(|_| ())
        })
        .await;
    }

    /// Sets phone `number`'s device count.
    pub async fn devices(&self, number: &str, count: u32) {
        let (code, v) = self
            .post(
                format!("{}/phones/{number}/devices", self.control),
                json!({ "count": count }),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }

    /// The agent's history row of message `id` (bare), if listed.
    pub async fn message(&self, id: &str) -> Option<Value> {
        let v = self.get(format!("{}/messages?limit=200", self.api)).await?;
        v["data"]["messages"]
            .as_array()?
            .iter()
            .find(|m| m["messageId"].as_str().is_some_and(|m| m.ends_with(id)))
            .cloned()
    }

    /// What phone `number`'s devices decrypted.
    pub async fn phone_messages(&self, number: &str) -> Vec<Value> {
        self.get(format!("{}/phones/{number}/messages", self.control))
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Sets (Some) or lifts (None) the simulated CDN's slow link.
    pub async fn slow_cdn(&self, bytes_per_second: Option<u64>) {
        let (code, v) = self
            .post(
                format!("{}/cdn/faults", self.control),
                json!({ "fault": "slow_transfers", "bytes_per_second": bytes_per_second }),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }

    /// The CDN's transfers under way in `direction`: bytes moved by each.
    pub async fn transfers(&self, direction: &str) -> Vec<u64> {
        self.get(format!("{}/cdn/transfers", self.control))
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|t| t["direction"] == json!(direction))
            .filter_map(|t| t["bytes"].as_u64())
            .collect()
    }
}

/// The media store of the data directory `dir`.
pub fn blob_root(dir: &Path) -> PathBuf {
    dir.join("blobs")
}

/// The names of the kept blobs (`<root>/<2 hex>/<64 hex>`), sorted.
pub fn blob_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(fans) = std::fs::read_dir(blob_root(dir)) else {
        return names;
    };
    for fan in fans.flatten() {
        if fan.file_name() == "tmp" || !fan.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(fan.path()).unwrap().flatten() {
            names.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

/// The staging files (`<root>/tmp/`), each with its length.
pub fn staging(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(blob_root(dir).join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Hex SHA-256.
pub fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `n` bytes no compressor shrinks (xorshift from `seed`).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}
