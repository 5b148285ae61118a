//! Request logs, in a test binary of their own: tracing caches per-callsite interest
//! process-wide, so a subscriber set by one test of a shared binary may miss events first hit
//! by another. Here one global subscriber sees everything.
//!
//! Every line logged while a request is handled names its operation (the envelope's
//! `meta.operationId`); neither the bearer token nor a QR payload ever reaches the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_gateway::api::{AppState, AuthKey, Claims, Role};
use wa_gateway::client::{ClientOptions, Keepalive};
use wa_gateway::service::{Service, ServiceOptions, WebhookSettings};
use wa_gateway::sim::Simulator;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::store::Store;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_request_logs_under_its_operation_id_and_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("wa_gateway=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let options = ClientOptions {
            socket: ClientConfig {
                url: sim.ws_url().to_owned(),
                trust: TrustRoot::from_key(sim.root_public_key()),
                clock: Arc::new(wa_gateway::util::clock::SystemClock),
                max_frame: MAX_FRAME,
                tls: None,
            },
            profile: Default::default(),
            backoff: Default::default(),
            keepalive: Keepalive::default(),
            messaging: Default::default(),
            label: String::new(),
        };
        let secret = b"a-test-secret-of-at-least-32-bytes!!".to_vec();
        // The webhook below points at loopback: allowed here as a deployment would allow it.
        let service = Service::with_options(
            Store::open(&db).await.unwrap(),
            options,
            ServiceOptions {
                webhooks: WebhookSettings {
                    allow_private: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let state = AppState::new(service, &AuthKey::Hs256(secret.clone()), vec![]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(wa_gateway::api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let token = wa_gateway::api::auth::mint(
            &secret,
            &Claims {
                sub: "u".into(),
                role: Role::Admin,
                subaccounts: vec!["*".into()],
                exp: wa_gateway::util::clock::now_ms() / 1000 + 600,
            },
        )
        .unwrap();
        let resp = reqwest::Client::new()
            .post(format!("{url}/api/whatsapp/s1/a1/connect"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        let op = v["meta"]["operationId"].as_str().unwrap().to_owned();
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        // A webhook whose URL carries credentials: neither they nor the secret are logged,
        // also while its events fail (nothing listens on port 9).
        let hook_secret = "webhook-secret-never-logged";
        let resp = reqwest::Client::new()
            .put(format!("{url}/api/whatsapp/s1/a1/webhook"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "url": "http://user:pw-in-url@127.0.0.1:9/hook?key=query-secret",
                "secret": hook_secret,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let resp = reqwest::Client::new()
            .post(format!("{url}/api/whatsapp/s1/a1/disconnect"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        // A signed media link's token is its credential: a request for one, however spelled,
        // logs no token (these are junk tokens; a real one is handled alike).
        let link_token = "7.1700000000.1800000000.M0VCMA.link-token-never-logged";
        for path in ["/api/media/", "/api/%6Dedia/", "/api/media//"] {
            let resp = reqwest::Client::new()
                .get(format!("{url}{path}{link_token}"))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.lines().any(|l| l.contains(&op)
                && l.contains("answered")
                && l.contains("/api/whatsapp/s1/a1/connect")),
            "the request's lines name its operation: {text}"
        );
        assert!(!text.contains(&token), "a token reached the log");
        assert!(!text.contains(&qr), "a QR payload reached the log");
        for secret in [
            hook_secret,
            "pw-in-url",
            "query-secret",
            "link-token-never-logged",
        ] {
            assert!(!text.contains(secret), "{secret} reached the log");
        }
        // The client the request started logs under its own span, naming its account.
        assert!(text.contains("s1/a1"), "{text}");
    })
    .await
    .expect("in time");
}
