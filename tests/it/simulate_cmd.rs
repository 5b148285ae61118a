//! `wa-gateway simulate` as a user runs it: the first stdout line says where it is, a client
//! trusting the printed root key pairs through the control API's scan endpoint.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wa_gateway::client::payload::ClientProfile;
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{
    Client, ClientOptions, ConnState, CredsStore, Event, Keepalive, MemoryCreds,
};
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::util::clock::SystemClock;

/// A minimal HTTP/1.1 POST over loopback: (status, body).
async fn post(base: &str, path: &str, body: &str) -> (u16, String) {
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

#[tokio::test]
async fn simulate_command_prints_its_urls_and_pairs_through_the_control_api() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        let info: serde_json::Value = serde_json::from_str(&first).unwrap();
        let ws_url = info["ws_url"].as_str().unwrap().to_owned();
        let control = info["control_url"].as_str().unwrap().to_owned();
        assert!(ws_url.starts_with("ws://127.0.0.1:") && control.starts_with("http://127.0.0.1:"));
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
                max_frame: MAX_FRAME,
                tls: None,
            },
            profile: ClientProfile::default(),
            backoff: Backoff::default(),
            keepalive: Keepalive::default(),
            messaging: Default::default(),
            label: String::new(),
        };
        let creds = Arc::new(MemoryCreds::default());
        let (client, mut events) = Client::start(opts, creds.clone());
        let code = loop {
            if let Some(Event::QrCode { code, .. }) = events.recv().await {
                break code;
            }
        };
        let (name_tx, name_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut name_tx = Some(name_tx);
            while let Some(e) = events.recv().await {
                if let Event::PushName { name } = e
                    && let Some(tx) = name_tx.take()
                {
                    let _ = tx.send(name);
                }
            }
        });

        // Bad requests are refused with a clear 4xx, never reaching the simulator.
        assert_eq!(
            post(&control, "/phones/15550006666/scan", "{not json")
                .await
                .0,
            400
        );
        assert_eq!(
            post(
                &control,
                "/phones/abc/scan",
                &format!("{{\"qr\":{:?}}}", code)
            )
            .await
            .0,
            400
        );
        assert_eq!(
            post(&control, "/phones/15550006666/scan", r#"{"qr":"nonsense"}"#)
                .await
                .0,
            422
        );
        let (status, body) =
            post(&control, "/faults", r#"{"account":"1","fault":"explode"}"#).await;
        assert_eq!(status, 400, "{body}");

        let (status, body) = post(
            &control,
            "/phones/15550006666/scan",
            &serde_json::json!({ "qr": code, "push_name": "Bob", "platform": "iphone" })
                .to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let jid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(jid.starts_with("15550006666:"), "{jid}");
        assert_eq!(
            client.wait_for(|s| *s == ConnState::Connected).await,
            ConnState::Connected
        );
        // The push name given to the control API reaches the client through the phone.
        assert_eq!(name_rx.await.unwrap(), "Bob");
        let me = creds.load().await.unwrap().unwrap().me.unwrap();
        assert_eq!(
            (me.push_name.as_deref(), me.platform.as_deref()),
            (Some("Bob"), Some("iphone"))
        );

        // A fault through the control API reaches the connected device; it reconnects.
        let (status, _) = post(
            &control,
            "/faults",
            r#"{"account":"15550006666","fault":"drop"}"#,
        )
        .await;
        assert_eq!(status, 200);
        client
            .wait_for(|s| matches!(s, ConnState::Disconnected { .. }))
            .await;
        assert_eq!(
            client.wait_for(|s| *s == ConnState::Connected).await,
            ConnState::Connected
        );
    })
    .await;
    let _ = child.kill().await;
    result.expect("finished in time");
}

#[tokio::test]
async fn simulate_tls_prints_its_ca_and_a_client_trusting_it_gets_a_qr() {
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("sim-ca.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
        .args(["simulate", "--tls", "--ca-out"])
        .arg(&ca_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        let info: serde_json::Value = serde_json::from_str(&first).unwrap();
        let ws_url = info["ws_url"].as_str().unwrap().to_owned();
        assert!(ws_url.starts_with("wss://127.0.0.1:"), "{ws_url}");
        assert_eq!(
            info["ca_cert"].as_str().unwrap(),
            ca_out.display().to_string()
        );
        let root = info["root_public_key"].as_str().unwrap().to_owned();
        // Configured the way a user would: the printed URL, root key and CA path.
        let config = wa_gateway::config::Config::from_lookup(|k| match k {
            "WA_GATEWAY_WS_URL" => Some(ws_url.clone()),
            "WA_GATEWAY_ROOT_KEY" => Some(root.clone()),
            "WA_GATEWAY_WS_CA" => Some(ca_out.display().to_string()),
            _ => None,
        })
        .unwrap();
        let opts = ClientOptions {
            socket: ClientConfig {
                url: config.whatsapp.ws_url.clone(),
                trust: config.whatsapp.trust_root(),
                clock: Arc::new(SystemClock),
                max_frame: MAX_FRAME,
                tls: config.whatsapp.tls().unwrap(),
            },
            profile: config.whatsapp.profile(),
            backoff: Backoff::default(),
            keepalive: Keepalive::default(),
            messaging: Default::default(),
            label: String::new(),
        };
        let (_client, mut events) = Client::start(opts, Arc::new(MemoryCreds::default()));
        loop {
            match events.recv().await.unwrap() {
                Event::QrCode { code, .. } => {
                    assert!(code.starts_with("https://wa.me/settings/linked_devices#2@"));
                    break;
                }
                Event::State(ConnState::Disconnected { reason, .. }) => {
                    panic!("could not connect over wss: {reason}")
                }
                _ => {}
            }
        }
    })
    .await;
    let _ = child.kill().await;
    result.expect("finished in time");
}
