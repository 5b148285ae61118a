//! The REST service end to end over loopback: the real server on a port-0 listener, a real
//! HTTP client (reqwest), the simulator as WhatsApp. Envelopes and fields are the guide's.

use std::time::Duration;

use serde_json::{Value, json};
use wa_gateway::api::{AppState, AuthKey, Claims, HttpLimits, Role};
use wa_gateway::binary::{Jid, Server as JidServer};
use wa_gateway::service::{Pacing, Service, ServiceOptions};
use wa_gateway::sim::{Fault, Simulator};
use wa_gateway::store::Store;

use super::guide::{example, same_shape};
use super::messaging::{eventually, options};

const LIMIT: Duration = Duration::from_secs(90);
const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

/// A running service: its URL and how to stop it.
pub(crate) struct Server {
    pub(crate) url: String,
    /// The service behind it (for its maps' sizes and its pruning pass).
    pub(crate) service: std::sync::Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(sim: &Simulator, db: &str) -> Server {
        Server::start_with(sim, db, Pacing::default()).await
    }

    async fn start_with(sim: &Simulator, db: &str, pacing: Pacing) -> Server {
        let opts = ServiceOptions {
            pacing,
            ..Default::default()
        };
        Server::start_opts(sim, db, opts).await
    }

    pub(crate) async fn start_opts(sim: &Simulator, db: &str, opts: ServiceOptions) -> Server {
        Server::start_full(db, options(sim), opts).await
    }

    pub(crate) async fn start_full(
        db: &str,
        client: wa_gateway::client::ClientOptions,
        opts: ServiceOptions,
    ) -> Server {
        Server::start_http(db, client, opts, HttpLimits::default()).await
    }

    pub(crate) async fn start_http(
        db: &str,
        client: wa_gateway::client::ClientOptions,
        opts: ServiceOptions,
        http: HttpLimits,
    ) -> Server {
        let store = Store::open(db).await.unwrap();
        // As `serve` does: the unpaced subaccounts are the unlimited ones.
        let unlimited = opts.unpaced.clone();
        let service = Service::with_options(store, client, opts);
        let mut state =
            AppState::new(service.clone(), &AuthKey::Hs256(SECRET.to_vec()), unlimited).unwrap();
        state.http = http;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = tokio::spawn(wa_gateway::api::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            url,
            service,
            stop: Some(tx),
            done,
        }
    }

    /// Graceful shutdown: returns once every client stopped.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.done.await.unwrap().unwrap();
    }
}

pub(crate) fn token(role: Role, subs: &[&str], exp_in: i64) -> String {
    let now = (wa_gateway::util::clock::now_ms() / 1000) as i64;
    wa_gateway::api::auth::mint(
        SECRET,
        &Claims {
            sub: "user-1".into(),
            role,
            subaccounts: subs.iter().map(|s| s.to_string()).collect(),
            exp: (now + exp_in) as u64,
        },
    )
    .unwrap()
}

pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http.request(method.clone(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    // Every answer of every test is as the OpenAPI document says.
    super::openapi_conform::check(method.as_str(), url, status, &v);
    (status, v)
}

/// A GET with a bearer token, through [`call`].
pub(crate) async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    call(http, reqwest::Method::GET, url, Some(token), None).await
}

/// The guide's envelope: success, message, data, meta.operationId (a UUID) and meta.duration.
pub(crate) fn assert_envelope(v: &Value, success: bool) {
    assert_eq!(v["success"], json!(success), "{v}");
    assert!(v["message"].is_string(), "{v}");
    let id = v["meta"]["operationId"].as_str().expect("operationId");
    assert_eq!(id.len(), 36, "{v}");
    let d = v["meta"]["duration"].as_str().expect("duration");
    assert!(
        d.ends_with("ms") && d.trim_end_matches("ms").parse::<u64>().is_ok(),
        "{v}"
    );
    if success {
        assert!(v["data"].is_object(), "{v}");
    } else {
        assert!(v["error"]["code"].is_string(), "{v}");
    }
}

#[tokio::test]
async fn connect_scan_send_receive_list_restart_and_disconnect() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15551000001", "15551000002");
        sim.set_devices(bob, 2).unwrap();

        // Not connected yet.
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/status"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200);
        assert_envelope(&v, true);
        assert_eq!(
            v["data"],
            json!({ "isConnected": false, "status": "not_initialized" })
        );
        let like = |msg: &str, key: Option<(&str, Value)>, ours: &Value| {
            same_shape(&example(msg, key), ours, "")
                .unwrap_or_else(|e| panic!("{msg}: {e}\n{ours}"));
        };
        like(
            "WhatsApp connection status retrieved",
            Some(("isConnected", json!(false))),
            &v,
        );

        // Connect: the first QR, as text and as a PNG that decodes to the same text.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_envelope(&v, true);
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        let url = v["data"]["qrCodeDataUrl"].as_str().unwrap();
        assert_eq!(crate::common::decode_png_data_url(url), qr);
        assert_eq!(
            v["data"]["message"],
            "Scan this QR code with WhatsApp mobile app"
        );
        like(
            "WhatsApp QR code generated. Scan with your mobile app.",
            None,
            &v,
        );
        // Connect again while the QR shows: the same QR, not a second session.
        let (_, again) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(again["data"]["qrCode"], json!(qr));

        // The phone scans: connected, with its number, platform and name.
        sim.scan(me, &qr, Some("Agent Phone"), None).await.unwrap();
        let status = eventually("connected with a push name", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/status"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["isConnected"] == json!(true) && v["data"]["pushname"].is_string())
                .then_some(v)
        })
        .await;
        assert_eq!(status["data"]["phoneNumber"], json!(me));
        assert_eq!(status["data"]["platform"], json!("android"));
        assert_eq!(status["data"]["pushname"], json!("Agent Phone"));
        assert_eq!(status["data"]["hasQR"], json!(false));
        assert_eq!(status["data"]["qrCodeDataUrl"], Value::Null);
        assert_eq!(status["data"]["isActive"], json!(true));
        like(
            "WhatsApp connection status retrieved",
            Some(("isConnected", json!(true))),
            &status,
        );

        // WhatsApp time-locks the account: status says so (and until when); lifted, it says
        // that too.
        sim.fault(me, wa_gateway::sim::Fault::ReachOutLock(true))
            .await;
        let locked = eventually("the lock in the status", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/status"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["reachoutTimelock"]["isActive"] == json!(true)).then_some(v)
        })
        .await;
        assert!(
            locked["data"]["reachoutTimelock"]["endsAt"].is_string(),
            "{locked}"
        );
        assert_eq!(
            locked["data"]["reachoutTimelock"]["enforcementType"],
            json!("DEFAULT")
        );
        sim.fault(me, wa_gateway::sim::Fault::ReachOutLock(false))
            .await;
        eventually("the lock lifted", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/status"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["reachoutTimelock"]["isActive"] == json!(false)).then_some(())
        })
        .await;

        // Send: the guide's answer; the simulated user reads it.
        eventually("our keys on the server", async || {
            sim.linked_devices(me)
                .first()
                .filter(|j| sim.uploaded_pre_keys(j) > 0)
                .cloned()
        })
        .await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "Hello from our chat agent!" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_envelope(&v, true);
        like("WhatsApp message sent successfully", None, &v);
        let d = &v["data"];
        let id = d["messageId"].as_str().unwrap().to_owned();
        assert!(id.starts_with(&format!("true_{bob}@c.us_3EB0")), "{id}");
        assert_eq!(d["to"], json!(format!("{bob}@c.us")));
        assert_eq!(d["message"], json!("Hello from our chat agent!"));
        assert!(d["timestamp"].as_u64().unwrap() > 1_700_000_000);
        let wire_id = id.rsplit('_').next().unwrap().to_owned();
        eventually("bob reads it", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == wire_id)
        })
        .await;

        // Bob answers; history lists both, newest first, with the guide's fields.
        let reply = sim.phone_send(bob, me, "Hi agent").await.unwrap();
        let history = eventually("both in the history", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/messages?limit=10"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["count"] == json!(2)).then_some(v)
        })
        .await;
        assert_envelope(&history, true);
        like("WhatsApp message history retrieved", None, &history);
        let msgs = history["data"]["messages"].as_array().unwrap();
        let inbound = &msgs[0];
        assert_eq!(inbound["direction"], json!("inbound"));
        assert_eq!(inbound["message"], json!("Hi agent"));
        assert!(inbound["messageId"].as_str().unwrap().ends_with(&reply));
        assert_eq!(inbound["to"], Value::Null);
        assert_eq!(inbound["hasMedia"], json!(false));
        assert_eq!(inbound["type"], json!("chat"));
        for k in ["timestamp", "createdAt"] {
            let t = inbound[k].as_str().unwrap();
            assert!(
                t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{k}: {t}"
            );
        }
        let outbound = &msgs[1];
        assert_eq!(outbound["direction"], json!("outbound"));
        assert_eq!(outbound["from"], Value::Null);
        assert_eq!(outbound["messageId"], json!(id));

        // The guide's collections as SQL views: the same rows, fields and forms as the API's.
        let side = Store::open(&db).await.unwrap();
        let rows = sqlx::query(
            "SELECT messageId, \"from\", \"to\", message, direction, timestamp, hasMedia, \
             type, createdAt, chat, status FROM whatsappmessages \
             WHERE subaccountId = 'sub1' AND agentId = 'agent1'",
        )
        .fetch_all(side.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), msgs.len());
        for m in msgs {
            use sqlx::Row;
            let id = m["messageId"].as_str().unwrap().rsplit('_').next().unwrap();
            let r = rows
                .iter()
                .find(|r| r.get::<String, _>("messageId") == id)
                .unwrap_or_else(|| panic!("{id} in the view"));
            let text = |k: &str| json!(r.get::<Option<String>, _>(k));
            for k in [
                "from",
                "to",
                "message",
                "direction",
                "timestamp",
                "type",
                "createdAt",
                "chat",
                "status",
            ] {
                assert_eq!(text(k), m[k], "{k} of {id}");
            }
            assert_eq!(json!(r.get::<bool, _>("hasMedia")), m["hasMedia"]);
        }

        // Connections of the subaccount.
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{}/api/whatsapp/sub1/connections", server.url),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(v["data"]["count"], json!(1));
        like("WhatsApp connections retrieved", None, &v);
        let c = &v["data"]["connections"][0];
        assert_eq!(
            (c["subaccountId"].clone(), c["agentId"].clone()),
            (json!("sub1"), json!("agent1"))
        );
        assert_eq!(c["status"], json!("connected"));
        assert_eq!(c["phoneNumber"], json!(me));
        let view = sqlx::query(
            "SELECT status, phoneNumber, platform, pushname, createdAt, connectedAt, createdBy \
             FROM whatsappconnections WHERE subaccountId = 'sub1' AND agentId = 'agent1'",
        )
        .fetch_one(side.pool())
        .await
        .unwrap();
        {
            use sqlx::Row;
            for k in [
                "status",
                "phoneNumber",
                "platform",
                "pushname",
                "createdAt",
                "connectedAt",
            ] {
                assert_eq!(json!(view.get::<Option<String>, _>(k)), c[k], "{k}");
            }
            assert_eq!(
                view.get::<Option<String>, _>("createdBy").as_deref(),
                Some("user-1")
            );
        }
        side.close().await;

        // A restart over the same database resumes the link with no QR.
        server.stop().await;
        let server = Server::start(&sim, &db).await;
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        eventually("resumed", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/status"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["isConnected"] == json!(true)).then_some(())
        })
        .await;
        let (_, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            v["data"]["isConnected"],
            json!(true),
            "connect on a connected agent: {v}"
        );

        // Disconnect: the phone forgets the device; the row and history stay.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/disconnect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            v["data"]["message"],
            json!("WhatsApp disconnected successfully")
        );
        like("WhatsApp disconnected successfully", None, &v);
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/status"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["isConnected"], json!(false));
        assert_eq!(v["data"]["status"], json!("disconnected"));
        eventually("the phone to forget us", async || {
            sim.linked_devices(me).is_empty().then_some(())
        })
        .await;
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["count"], json!(2));
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{}/api/whatsapp/sub1/activities", server.url),
            Some(&admin),
            None,
        )
        .await;
        let kinds: Vec<&str> = v["data"]["activities"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["type"].as_str())
            .collect();
        for k in [
            "whatsapp_connected",
            "whatsapp_message_sent",
            "whatsapp_message_received",
            "whatsapp_disconnected",
        ] {
            assert!(kinds.contains(&k), "{k} in {kinds:?}");
        }
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn tokens_are_checked_and_tenants_and_viewers_are_held_to_their_rights() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let status = format!("{}/api/whatsapp/a/agent/status", server.url);
        let get = |t: Option<String>, url: String| {
            let http = http.clone();
            async move { call(&http, reqwest::Method::GET, &url, t.as_deref(), None).await }
        };
        // The OpenAPI document needs no token and names every endpoint.
        let doc: Value = http
            .get(format!("{}/api/openapi.json", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            doc["openapi"]
        );
        for p in ["connect", "status", "send", "messages", "disconnect"] {
            assert!(
                doc["paths"][format!("/api/whatsapp/{{subaccountId}}/{{agentId}}/{p}")].is_object(),
                "{p}"
            );
        }
        assert!(doc["paths"]["/api/whatsapp/{subaccountId}/connections"]["get"].is_object());
        // Missing, malformed, expired, wrong key: 401 with the envelope.
        for t in [
            None,
            Some("not-a-jwt".to_owned()),
            Some(token(Role::Admin, &["*"], -3600)),
            Some(
                wa_gateway::api::auth::mint(
                    b"another-secret-another-secret-123456",
                    &Claims {
                        sub: "x".into(),
                        role: Role::Admin,
                        subaccounts: vec![],
                        exp: u64::MAX / 4,
                    },
                )
                .unwrap(),
            ),
        ] {
            let (code, v) = get(t, status.clone()).await;
            assert_eq!(code, 401, "{v}");
            assert_envelope(&v, false);
            assert_eq!(v["error"]["code"], json!("unauthorized"));
        }
        // A token for subaccount a: 403 on b, and nothing of b in the answer.
        let member_a = token(Role::Member, &["a"], 3600);
        let (code, _) = get(Some(member_a.clone()), status.clone()).await;
        assert_eq!(code, 200);
        let (code, v) = get(
            Some(member_a.clone()),
            format!("{}/api/whatsapp/b/agent/status", server.url),
        )
        .await;
        assert_eq!(code, 403);
        assert_eq!(v["error"]["code"], json!("forbidden"));
        assert!(v.get("data").is_none());
        // Viewers read, never write.
        let viewer = token(Role::Viewer, &["a"], 3600);
        assert_eq!(get(Some(viewer.clone()), status.clone()).await.0, 200);
        for (path, body) in [
            ("connect", None),
            ("send", Some(json!({ "to": "15551234567", "message": "x" }))),
            ("disconnect", None),
        ] {
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{}/api/whatsapp/a/agent/{path}", server.url),
                Some(&viewer),
                body,
            )
            .await;
            assert_eq!(code, 403, "{path}: {v}");
        }
        // The 21st connect in a minute: 429 with Retry-After.
        let admin = token(Role::Admin, &["*"], 3600);
        let url = format!("{}/api/whatsapp/limited/agent/disconnect", server.url);
        for _ in 0..20 {
            let (code, _) = call(&http, reqwest::Method::POST, &url, Some(&admin), None).await;
            assert_eq!(code, 404, "no such connection yet");
        }
        let resp = http.post(&url).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        let after: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&after));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], json!("rate_limited"));
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_envelope_and_stores_nothing() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/s/a", server.url);
        let raw = |path: String, body: Vec<u8>| {
            let (http, admin) = (http.clone(), admin.clone());
            async move {
                let resp = http
                    .post(path)
                    .bearer_auth(admin)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let code = resp.status().as_u16();
                (code, resp.json::<Value>().await.unwrap())
            }
        };
        let send = format!("{base}/send");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{".to_vec(), "invalid_json"),
            (b"[1,2]".to_vec(), "invalid_json"),
            (br#"{"message":"x"}"#.to_vec(), "missing_to"),
            (
                br#"{"to":15551234567,"message":"x"}"#.to_vec(),
                "invalid_to",
            ),
            (
                br#"{"to":"+15551234567","message":"x"}"#.to_vec(),
                "invalid_to",
            ),
            (br#"{"to":"123","message":"x"}"#.to_vec(), "invalid_to"),
            (br#"{"to":"15551234567"}"#.to_vec(), "missing_message"),
            (
                br#"{"to":"15551234567","message":""}"#.to_vec(),
                "invalid_message",
            ),
            (
                br#"{"to":"15551234567","message":7}"#.to_vec(),
                "invalid_message",
            ),
            // A JSON send may carry a file as base64 (up to 24 MiB of body); past it, refused.
            (vec![b' '; 24 * 1024 * 1024 + 1], "payload_too_large"),
        ];
        for (body, code) in cases {
            let (status, v) = raw(send.clone(), body).await;
            assert!((400..500).contains(&status), "{code}: {status} {v}");
            assert_eq!(v["error"]["code"], json!(code), "{v}");
            assert_envelope(&v, false);
        }
        // A valid body for an agent never connected: 404, nothing stored.
        let (status, v) = raw(
            send.clone(),
            br#"{"to":"15551234567","message":"x","extra":1}"#.to_vec(),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (404, json!("connection_not_found"))
        );
        for q in [
            "limit=0",
            "limit=501",
            "limit=-1",
            "skip=-5",
            "limit=abc",
            "skip=99999999999",
        ] {
            let (status, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/messages?{q}"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(
                (status, v["error"]["code"].clone()),
                (400, json!("invalid_query")),
                "{q}: {v}"
            );
        }
        for path in [
            "s%20x/a/status",
            "s/a%00b/status",
            &format!("{}/a/status", "x".repeat(200)),
        ] {
            let (status, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{}/api/whatsapp/{path}", server.url),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(
                (status, v["error"]["code"].clone()),
                (400, json!("invalid_path")),
                "{path}: {v}"
            );
        }
        // Every endpoint, odd ids and bad pages: 4xx envelopes only.
        for (method, path) in [
            (reqwest::Method::POST, "s%2Fx/a/connect"),
            (reqwest::Method::POST, "s/a%20b/disconnect"),
            (reqwest::Method::GET, "s%3Cscript%3E/connections"),
            (reqwest::Method::GET, "s/activities?limit=100000"),
            (reqwest::Method::GET, "s/activities?skip=-1"),
            (reqwest::Method::POST, "s/unknown-agent/disconnect"),
            (reqwest::Method::GET, "s/unknown-agent/messages"),
        ] {
            let (status, v) = call(
                &http,
                method,
                &format!("{}/api/whatsapp/{path}", server.url),
                Some(&admin),
                None,
            )
            .await;
            assert!((400..500).contains(&status), "{path}: {status} {v}");
            assert_envelope(&v, false);
        }
        let (status, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{}/nope", server.url),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        let store = Store::open(&db).await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0);
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(accounts, 0);
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// Connects (subaccount, agent) and has `number`'s phone scan; returns once it is connected and
/// its keys are on the server.
pub(crate) async fn link(
    sim: &Simulator,
    http: &reqwest::Client,
    token: &str,
    base: &str,
    number: &str,
) {
    let (code, v) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/connect"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
    sim.scan(number, &qr, Some("Agent"), None).await.unwrap();
    eventually("connected", async || {
        let (_, v) = call(
            http,
            reqwest::Method::GET,
            &format!("{base}/status"),
            Some(token),
            None,
        )
        .await;
        (v["data"]["isConnected"] == json!(true)).then_some(())
    })
    .await;
    eventually("our keys on the server", async || {
        sim.linked_devices(number)
            .first()
            .filter(|j| sim.uploaded_pre_keys(j) > 0)
            .cloned()
    })
    .await;
}

#[tokio::test]
async fn the_outbox_sends_once_per_idempotency_key_in_order_and_answers_pending_without_waiting() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let pacing = Pacing {
            per_minute: 6000,
            burst: 5,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        };
        let server = Server::start_with(&sim, &db, pacing).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        let (me, bob) = ("15552000001", "15552000002");
        sim.set_devices(bob, 1).unwrap();

        // Not connected yet: refused, nothing queued.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "too early" })),
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (409, json!("not_connected")),
            "{v}"
        );
        link(&sim, &http, &admin, &base, me).await;

        // The same Idempotency-Key twice: one message, the same answer.
        let send_keyed = |key: &'static str, text: &'static str| {
            let (http, admin, url) = (http.clone(), admin.clone(), format!("{base}/send"));
            async move {
                let resp = http
                    .post(url)
                    .bearer_auth(admin)
                    .header("idempotency-key", key)
                    .json(&json!({ "to": bob, "message": text }))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (c1, first) = send_keyed("order-42", "once only").await;
        let (c2, second) = send_keyed("order-42", "once only").await;
        assert_eq!((c1, c2), (200, 200), "{first} {second}");
        assert_eq!(first["data"]["messageId"], second["data"]["messageId"]);
        assert_eq!(first["data"]["status"], json!("server_ack"));
        // The same key for another message, or to another chat, is a client bug: refused,
        // never answered with the first message's outcome.
        for (to, text) in [(bob, "something else"), ("15552000009", "once only")] {
            let resp = http
                .post(format!("{base}/send"))
                .bearer_auth(&admin)
                .header("idempotency-key", "order-42")
                .json(&json!({ "to": to, "message": text }))
                .send()
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            super::openapi_conform::check("POST", &format!("{base}/send"), code, &v);
            assert_eq!(
                (code, v["error"]["code"].clone()),
                (422, json!("idempotency_key_reused")),
                "{to} {text}: {v}"
            );
            assert_envelope(&v, false);
        }
        // The keys the service gives webhook replies are not the REST caller's to use.
        let resp = http
            .post(format!("{base}/send"))
            .bearer_auth(&admin)
            .header(
                "idempotency-key",
                "webhook-reply:01ARZ3NDEKTSV4RRFFQ69G5FAV",
            )
            .json(&json!({ "to": bob, "message": "not a reply" }))
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (400, json!("invalid_idempotency_key")),
            "{v}"
        );
        let wire_id = first["data"]["messageId"]
            .as_str()
            .unwrap()
            .rsplit('_')
            .next()
            .unwrap()
            .to_owned();
        eventually("bob reads it", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == wire_id)
        })
        .await;

        // A burst without waiting: each answers pending at once, with the id it keeps; all
        // arrive, in order, once.
        let mut ids = Vec::new();
        for i in 0..12 {
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/send"),
                Some(&admin),
                Some(json!({ "to": bob, "message": format!("burst {i}"), "wait": false })),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            assert_eq!(v["data"]["status"], json!("pending"), "{v}");
            ids.push(
                v["data"]["messageId"]
                    .as_str()
                    .unwrap()
                    .rsplit('_')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        let got = eventually("the burst delivered", async || {
            let m = sim.phone_messages(bob);
            ids.iter()
                .all(|id| m.iter().any(|x| &x.id == id))
                .then_some(m)
        })
        .await;
        let order: Vec<usize> = ids
            .iter()
            .map(|id| got.iter().position(|m| &m.id == id).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?}");
        let texts: Vec<&str> = got.iter().filter_map(|m| m.text.as_deref()).collect();
        assert_eq!(texts.iter().filter(|t| **t == "once only").count(), 1);
        assert_eq!(got.len(), 13, "each once");
        // Once on the wire too: WhatsApp routes every stanza it accepts, so a second
        // transmission of an acked message would be counted here (and at bob's phone).
        for id in ids.iter().chain([&wire_id]) {
            let wire = sim.transmissions(id);
            assert_eq!(
                (wire.originals, wire.retry_answers, wire.refused, wire.held),
                (1, 0, 0, 0),
                "{wire:?}"
            );
            let at_bob = got.iter().find(|m| &m.id == id).unwrap();
            assert_eq!(at_bob.transmissions, 1, "{at_bob:?}");
        }
        // The history shows each once too.
        let (_, h) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages?limit=50"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(h["data"]["count"], json!(13));
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_logged_in_session_that_hears_nothing_is_not_reported_connected() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let mut client = options(&sim);
        client.keepalive = wa_gateway::client::Keepalive {
            min_interval: Duration::from_millis(200),
            max_interval: Duration::from_millis(300),
            deadline: Duration::from_millis(1500),
        };
        // The test polls status faster than its rate limit allows.
        let opts = ServiceOptions {
            unpaced: vec!["sub9".into()],
            ..Default::default()
        };
        let server = Server::start_full(&db, client, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub9/agent9", server.url);
        let me = "15559000001";
        link(&sim, &http, &admin, &base, me).await;
        let status = async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/status"),
                Some(&admin),
                None,
            )
            .await;
            v["data"].clone()
        };
        // Pongs keep coming: connected, and it stays so across several pings.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(status().await["isConnected"], json!(true));

        // The server goes silent: within the keepalive's limit the status stops saying
        // connected, and says what it is instead.
        assert!(
            sim.fault(me, wa_gateway::sim::Fault::AnswerPings(false))
                .await
                > 0
        );
        let since = tokio::time::Instant::now();
        let s = eventually("not connected", async || {
            let s = status().await;
            (s["isConnected"] == json!(false)).then_some(s)
        })
        .await;
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{:?}",
            since.elapsed()
        );
        assert_eq!(s["status"], json!("pending"), "{s}");
        assert!(
            ["unresponsive", "reconnecting", "connecting", "logging_in"]
                .contains(&s["code"].as_str().unwrap()),
            "{s}"
        );
        // Answers again: connected again, with the same link (no QR).
        sim.fault(me, wa_gateway::sim::Fault::AnswerPings(true))
            .await;
        let s = eventually("connected again", async || {
            let s = status().await;
            (s["isConnected"] == json!(true)).then_some(s)
        })
        .await;
        assert_eq!(s["hasQR"], json!(false));
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_send_without_an_ack_is_accepted_not_confirmed_and_a_vanished_one_is_not_a_missing_connection()
 {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let mut client = options(&sim);
        client.messaging.ack_timeout = Duration::from_millis(500);
        let opts = ServiceOptions {
            pacing: Pacing {
                per_minute: 6000,
                burst: 50,
                // A second message to the same chat waits a minute in the queue.
                chat_gap: Duration::from_secs(60),
                wait: Duration::from_secs(3),
                ..Pacing::default()
            },
            ..Default::default()
        };
        let server = Server::start_full(&db, client, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub8/agent8", server.url);
        let (me, bob) = ("15558000001", "15558000002");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;

        // WhatsApp takes our messages but does not ack them: the send is not confirmed, and
        // the answer does not claim it was sent.
        sim.fault(me, wa_gateway::sim::Fault::WithholdAcks(true))
            .await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "unconfirmed" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["status"], json!("pending"), "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("accepted, not yet confirmed") && !message.contains("successfully"),
            "{message}"
        );

        // A send whose outbox row goes away while the request waits: its agent's connection is
        // still there, so the answer must not say it is not.
        let side = Store::open(&db).await.unwrap();
        let request = {
            let (http, admin, url) = (http.clone(), admin.clone(), format!("{base}/send"));
            tokio::spawn(async move {
                call(
                    &http,
                    reqwest::Method::POST,
                    &url,
                    Some(&admin),
                    Some(json!({ "to": bob, "message": "vanishing" })),
                )
                .await
            })
        };
        eventually("the row removed", async || {
            let gone = sqlx::query("DELETE FROM outbox WHERE body = 'vanishing'")
                .execute(side.pool())
                .await
                .unwrap()
                .rows_affected();
            (gone == 1).then_some(())
        })
        .await;
        let (code, v) = request.await.unwrap();
        assert_envelope(&v, false);
        assert_ne!(v["error"]["code"], json!("connection_not_found"), "{v}");
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (410, json!("send_record_gone")),
            "{v}"
        );
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn viewers_see_no_qr_code_and_no_credentials_of_a_webhook_url() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let viewer = token(Role::Viewer, &["subv"], 3600);
        let base = format!("{}/api/whatsapp/subv/agentv", server.url);
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        let status = |t: String| {
            let (http, url) = (http.clone(), format!("{base}/status"));
            async move {
                call(&http, reqwest::Method::GET, &url, Some(&t), None)
                    .await
                    .1
            }
        };
        // Whoever holds the QR can link a phone to the account: writers only.
        let shown = status(admin.clone()).await;
        let png = shown["data"]["qrCodeDataUrl"].as_str().unwrap();
        assert_eq!(crate::common::decode_png_data_url(png), qr);
        let seen = status(viewer.clone()).await;
        assert_eq!(seen["data"]["hasQR"], json!(true), "{seen}");
        assert!(seen["data"].get("qrCodeDataUrl").is_none(), "{seen}");
        assert!(seen["data"].get("qrCode").is_none(), "{seen}");

        // A webhook URL may carry credentials in its userinfo or query: viewers see neither.
        let url = "https://hook-user:hook-pass@example.invalid/hook/path?token=query-secret#frag";
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({ "url": url, "secret": "whsec-test-0123456789abcdef" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (_, full) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(full["data"]["url"], json!(url), "{full}");
        let (code, redacted) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook"),
            Some(&viewer),
            None,
        )
        .await;
        assert_eq!(code, 200, "{redacted}");
        assert_eq!(
            redacted["data"]["url"],
            json!("https://example.invalid/hook/path"),
            "{redacted}"
        );
        for secret in ["hook-user", "hook-pass", "query-secret"] {
            assert!(!redacted.to_string().contains(secret), "{redacted}");
        }
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_token_naming_an_audience_the_service_does_not_expect_is_told_so() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let now = wa_gateway::util::clock::now_ms() / 1000;
        let with_aud = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({
                "sub": "user-1", "role": "admin", "subaccounts": ["*"],
                "exp": now + 600, "aud": "some-other-service",
            }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{}/api/whatsapp/s/a/status", server.url),
            Some(&with_aud),
            None,
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("audience") && message.contains("WA_GATEWAY_JWT_AUDIENCE"),
            "{message}"
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// Reads one HTTP/1.1 answer from `s`: its status, headers (lower-case names) and JSON body.
async fn read_answer(s: &mut tokio::net::TcpStream) -> (u16, Vec<(String, String)>, Value) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (
        status,
        headers,
        serde_json::from_slice(&body[..len]).unwrap(),
    )
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_and_request_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let http = HttpLimits {
            request_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(1),
            max_connections: 64,
        };
        let server = Server::start_http(&db, options(&sim), ServiceOptions::default(), http).await;
        let addr = server.url.strip_prefix("http://").unwrap().to_owned();

        // Slow loris: headers begun, never finished. The server closes the connection.
        let mut loris = tokio::net::TcpStream::connect(&addr).await.unwrap();
        loris
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), loris.read_to_end(&mut rest))
            .await
            .expect("the server cuts off a client that never finishes its headers");
        assert!(closed.is_err() || rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"));

        // A body that stops coming: the request is answered with an envelope when its time is
        // up, not held open.
        let admin = token(Role::Admin, &["*"], 3600);
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/whatsapp/s/a/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\""
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let (status, _, v) = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut slow))
            .await
            .expect("answered when the request's time is up");
        super::openapi_conform::check(
            "POST",
            &format!("{}/api/whatsapp/s/a/send", server.url),
            status,
            &v,
        );
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (503, json!("request_timeout")),
            "{v}"
        );
        assert_envelope(&v, false);
        // The server still serves others.
        let ok = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_an_envelope() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let http = HttpLimits {
            max_connections: 2,
            ..HttpLimits::default()
        };
        let server = Server::start_http(&db, options(&sim), ServiceOptions::default(), http).await;
        let addr = server.url.strip_prefix("http://").unwrap().to_owned();
        // Two idle connections take both places (the server accepts in arrival order).
        let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _second = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let resp = reqwest::get(format!("{}/healthz", server.url))
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").cloned();
        let v: Value = resp.json().await.unwrap();
        super::openapi_conform::check("GET", &format!("{}/healthz", server.url), status, &v);
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (503, json!("too_many_connections")),
            "{v}"
        );
        assert_envelope(&v, false);
        assert!(retry_after.is_some());
        // One leaves: its place is free again.
        drop(first);
        eventually("a place again", async || {
            let r = reqwest::get(format!("{}/healthz", server.url)).await.ok()?;
            (r.status().as_u16() == 200).then_some(())
        })
        .await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// The WhatsApp id (after the last `_`) of an API `messageId`.
fn wire_id(message_id: &Value) -> String {
    message_id
        .as_str()
        .unwrap()
        .rsplit('_')
        .next()
        .unwrap()
        .to_owned()
}

/// A webhook for `message.status` set straight in the store (never reached here: the events
/// are read back from the store).
async fn status_events(store: &Store, sub: &str, agent: &str) -> wa_gateway::store::AccountId {
    let acct = store.account(sub, agent).await.unwrap();
    store
        .set_webhook(
            acct,
            "http://127.0.0.1:9/hook",
            b"status-events-secret",
            &["message.status"],
            None,
        )
        .await
        .unwrap();
    acct
}

#[tokio::test]
async fn disconnect_cancels_queued_and_unacked_sends_with_events_and_a_new_link_sends_none() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        // One send a minute: after the first, the others wait in the queue.
        let pacing = Pacing {
            per_minute: 1,
            burst: 1,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        };
        let server = Server::start_with(&sim, &db, pacing).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        let (me, other, bob) = ("15552100001", "15552100002", "15552100003");
        sim.set_devices(bob, 1).unwrap();
        let store = Store::open(&db).await.unwrap();
        let acct = status_events(&store, "sub", "agent").await;
        link(&sim, &http, &admin, &base, me).await;
        let old_device = sim.linked_devices(me)[0].to_string();

        // The first leaves and is never acked (the server holds it); two wait their turn.
        assert_eq!(sim.fault(me, Fault::WithholdAcks(true)).await, 1);
        let mut ids = Vec::new();
        for i in 0..3 {
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/send"),
                Some(&admin),
                Some(json!({ "to": bob, "message": format!("before {i}"), "wait": false })),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            ids.push(wire_id(&v["data"]["messageId"]));
        }
        eventually("the first on the wire", async || {
            (sim.transmissions(&ids[0]).held == 1).then_some(())
        })
        .await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/disconnect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");

        // All three are cancelled, each with its event: the first as a message recorded and
        // never acked, the others as sends never made.
        let events = store.webhook_events(acct, None, 50, 0).await.unwrap();
        let cancelled: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "message.status" && e.status.as_deref() == Some("cancelled"))
            .collect();
        assert_eq!(cancelled.len(), 3, "{events:?}");
        assert_eq!(
            cancelled.iter().filter(|e| e.message_pk.is_some()).count(),
            1
        );
        for id in &ids[1..] {
            assert!(
                cancelled
                    .iter()
                    .any(|e| e.data.as_deref().is_some_and(|d| d.contains(id.as_str()))),
                "{id}: {cancelled:?}"
            );
        }
        let (_, h) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages?limit=10"),
            Some(&admin),
            None,
        )
        .await;
        let first = h["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| wire_id(&m["messageId"]) == ids[0])
            .cloned()
            .unwrap();
        assert_eq!(first["status"], json!("cancelled"), "{first}");

        // The server lets the held one through (it left before the disconnect); the agent is
        // linked again, to another number: nothing of before goes out from it.
        assert_eq!(sim.fault(me, Fault::WithholdAcks(false)).await, 1);
        link(&sim, &http, &admin, &base, other).await;
        let new_device = sim.linked_devices(other)[0].to_string();
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "after" })),
        )
        .await;
        assert_eq!(
            (code, &v["data"]["status"]),
            (200, &json!("server_ack")),
            "{v}"
        );
        let after = wire_id(&v["data"]["messageId"]);
        assert_eq!(sim.transmissions(&after).originals, 1);
        for id in &ids[1..] {
            let t = sim.transmissions(id);
            assert_eq!((t.originals, t.held, t.refused), (0, 0, 0), "{t:?}");
        }
        let first = sim.transmissions(&ids[0]);
        assert_eq!(first.originals, 1, "{first:?}");
        assert!(
            first
                .stanzas
                .iter()
                .all(|l| l.from == old_device && l.from != new_device),
            "{first:?}"
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_send_queued_past_its_ttl_expires_unsent_with_its_event() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        // A TTL of nothing: whatever is queued has waited too long when its turn comes.
        let opts = ServiceOptions {
            send_ttl: Some(Duration::ZERO),
            ..Default::default()
        };
        let server = Server::start_opts(&sim, &db, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        let (me, bob) = ("15552200001", "15552200002");
        sim.set_devices(bob, 1).unwrap();
        let store = Store::open(&db).await.unwrap();
        let acct = status_events(&store, "sub", "agent").await;
        link(&sim, &http, &admin, &base, me).await;
        let send = async || {
            let resp = http
                .post(format!("{base}/send"))
                .bearer_auth(&admin)
                .header("idempotency-key", "too-late")
                .json(&json!({ "to": bob, "message": "too late" }))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        };
        let (code, v) = send().await;
        assert_eq!(
            (code, &v["error"]["code"]),
            (409, &json!("send_expired")),
            "{v}"
        );
        let row = store.find_send(acct, "too-late").await.unwrap().unwrap();
        assert_eq!(row.state, wa_gateway::store::OutboxState::Expired);
        // Asked again, the same answer; and it never went on the wire.
        let (code, v) = send().await;
        assert_eq!(
            (code, &v["error"]["code"]),
            (409, &json!("send_expired")),
            "{v}"
        );
        let t = sim.transmissions(&row.message_id);
        assert_eq!((t.originals, t.held, t.refused), (0, 0, 0), "{t:?}");
        // Its event names the message it would have been.
        let event = eventually("the expired event's body", async || {
            store
                .webhook_events(acct, None, 10, 0)
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.status.as_deref() == Some("expired") && e.payload.is_some())
        })
        .await;
        let body: Value = serde_json::from_str(event.payload.as_deref().unwrap()).unwrap();
        assert_eq!(body["event"], json!("message.status"));
        assert_eq!(body["data"]["status"], json!("expired"));
        assert_eq!(wire_id(&body["data"]["messageId"]), row.message_id);
        assert_eq!(body["data"]["to"], json!(format!("{bob}@c.us")));
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn after_a_crash_the_drain_never_transmits_a_recorded_message_and_a_pending_one_goes_once() {
    use wa_gateway::client::{CredsStore, MessageStatus, StoredMessage};
    use wa_gateway::store::outbox::NewSend;
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start(&sim, &db).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        let (me, bob) = ("15552300001", "15552300002");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;
        // A first message teaches the account bob's LID (his conversation's key).
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "hello" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        server.stop().await;

        // What a crash can leave: sends still queued whose messages were recorded, one
        // already acked by WhatsApp, one never acked.
        let store = Store::open(&db).await.unwrap();
        let acct = store.account("sub", "agent").await.unwrap();
        let creds = store.creds(acct);
        let me_creds = creds.load().await.unwrap().unwrap().me.unwrap();
        let chat = Jid::new(creds.lid_for(bob).await.unwrap().unwrap(), JidServer::Lid);
        let mine = me_creds.lid.unwrap().to_non_ad();
        let now = wa_gateway::util::clock::now_ms() as i64;
        let mut pks = Vec::new();
        for (id, status) in [
            ("ACKEDBEFORE01", MessageStatus::ServerAck),
            ("PENDINGBEFORE1", MessageStatus::Pending),
        ] {
            let text = format!("recorded {id}");
            let (row, _) = store
                .enqueue_send(
                    acct,
                    &NewSend {
                        idem_key: Some(id),
                        message_id: id,
                        to: &format!("{bob}@s.whatsapp.net"),
                        body: &text,
                        user_id: None,
                        now_ms: now,
                        media: None,
                    },
                )
                .await
                .unwrap();
            pks.push(row.pk);
            let raw = wa_gateway::proto::wa::Message {
                conversation: Some(text.clone()),
                ..Default::default()
            };
            creds
                .commit_message(
                    &wa_gateway::signal::SignalChanges::default(),
                    &StoredMessage {
                        id: id.into(),
                        chat: chat.clone(),
                        sender: mine.clone(),
                        from_me: true,
                        timestamp: (now / 1000) as u64,
                        push_name: None,
                        text: Some(text),
                        raw: prost::Message::encode_to_vec(&raw),
                        status,
                        ..StoredMessage::default()
                    },
                )
                .await
                .unwrap();
        }

        // The restart: the drain meets both rows, the resend loop the pending message.
        let server = Server::start(&sim, &db).await;
        eventually("both sends settled and the pending one acked", async || {
            for pk in &pks {
                if store.send_row(*pk).await.ok()??.state == wa_gateway::store::OutboxState::Queued
                {
                    return None;
                }
            }
            let m = creds.sent_message(&chat, "PENDINGBEFORE1").await.ok()??;
            matches!(
                m.status,
                MessageStatus::ServerAck | MessageStatus::Delivered
            )
            .then_some(())
        })
        .await;
        let acked = sim.transmissions("ACKEDBEFORE01");
        assert_eq!(
            (acked.originals, acked.held),
            (0, 0),
            "acked: never again {acked:?}"
        );
        let pending = sim.transmissions("PENDINGBEFORE1");
        assert_eq!(
            (pending.originals, pending.held),
            (1, 0),
            "pending: once {pending:?}"
        );
        let acked_send = store.send_row(pks[0]).await.unwrap().unwrap();
        let result: Value = serde_json::from_str(acked_send.result.as_deref().unwrap()).unwrap();
        assert_eq!(
            (acked_send.state.as_str(), &result["status"]),
            ("done", &json!("server_ack")),
            "{result}"
        );
        let got = eventually("bob reads the pending one", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.id == "PENDINGBEFORE1")
        })
        .await;
        assert_eq!(got.transmissions, 1);
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// A stop while a QR showed (nothing linked, nothing to resume) left the row `pending`, and
/// `connections` said so for ever while `status` said `disconnected`. Both now give the guide's
/// status with the precise state in `code`, from the same place, and the row and the SQL view
/// are settled at the next start.
#[tokio::test]
async fn a_stop_during_pairing_leaves_no_stale_pending_and_both_views_agree() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let server = Server::start(&sim, &db).await;
        let base = format!("{}/api/whatsapp/sub15/agent15", server.url);
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/connect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let both = |url: String| {
            let (http, admin) = (http.clone(), admin.clone());
            async move {
                let (_, s) = call(
                    &http,
                    reqwest::Method::GET,
                    &format!("{url}/api/whatsapp/sub15/agent15/status"),
                    Some(&admin),
                    None,
                )
                .await;
                let (_, c) = call(
                    &http,
                    reqwest::Method::GET,
                    &format!("{url}/api/whatsapp/sub15/connections"),
                    Some(&admin),
                    None,
                )
                .await;
                (s["data"].clone(), c["data"]["connections"][0].clone())
            }
        };
        let (s, c) = both(server.url.clone()).await;
        assert_eq!(
            (&s["status"], &s["code"]),
            (&json!("pending"), &json!("awaiting_pair")),
            "{s}"
        );
        assert_eq!(
            (&c["status"], &c["code"]),
            (&s["status"], &s["code"]),
            "{c}"
        );
        server.stop().await;

        // The next start: no client takes it up.
        let server = Server::start(&sim, &db).await;
        let (s, c) = both(server.url.clone()).await;
        assert_eq!(s["status"], json!("disconnected"), "{s}");
        assert_eq!(s["isActive"], json!(false), "{s}");
        for k in ["status", "code", "reason"] {
            assert_eq!(c[k], s[k], "{k}: {c} vs {s}");
        }
        assert_eq!(
            (&s["code"], &s["reason"]),
            (&json!("disconnected"), &json!("interrupted"))
        );
        let side = Store::open(&db).await.unwrap();
        let (status, code, reason): (String, String, Option<String>) = sqlx::query_as(
            "SELECT status, code, reason FROM whatsappconnections WHERE agentId = 'agent15'",
        )
        .fetch_one(side.pool())
        .await
        .unwrap();
        assert_eq!(
            (json!(status), json!(code), json!(reason)),
            (s["status"].clone(), s["code"].clone(), s["reason"].clone())
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}
