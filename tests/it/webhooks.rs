//! Webhooks end to end over loopback: the service on a port, the simulator as WhatsApp, and a
//! local receiver that checks each signature with its own HMAC, goes down, comes back, and
//! answers with replies.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wa_gateway::api::Role;
use wa_gateway::service::{Pacing, ServiceOptions, WebhookSettings};
use wa_gateway::sim::Simulator;

use super::messaging::eventually;
use super::rest::{Server, assert_envelope, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);
const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// What the receiver got: headers that matter and the parsed body.
#[derive(Debug, Clone)]
struct Got {
    id_header: String,
    attempt: u32,
    /// The signature's timestamp (unix seconds).
    t: u64,
    /// The status the receiver answered.
    answered: u16,
    body: Value,
    raw: Vec<u8>,
}

/// The receiver answers 200 (`UP`), 500 (`FAILING`), and replies `pong` to a `ping`.
const UP: u8 = 0;
const FAILING: u8 = 1;

/// How long a signature's timestamp may be from the receiver's clock (README's window).
const FRESHNESS_S: u64 = 300;

/// The receiver's check, as README tells users to write it: the header's `t` within five
/// minutes of now, and one of its `v1` the HMAC-SHA256 of `t + "." + body` under the secret,
/// compared in constant time. The timestamp when it holds.
fn verified(header: &str, body: &[u8], secret: &str) -> Option<u64> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => signatures.push(wa_gateway::util::hex::decode(v)?),
            _ => {}
        }
    }
    let t = t?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t) > FRESHNESS_S {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    signatures
        .iter()
        .any(|s| mac.clone().verify_slice(s).is_ok())
        .then_some(t)
}

/// A test's own answer to an event (None: the receiver's default).
type Script = Arc<dyn Fn(&Value) -> Option<axum::response::Response> + Send + Sync>;

fn default_script() -> Script {
    Arc::new(|_| None)
}

struct Receiver {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `port` (any when 0), keeping what it got in `got`.
    async fn start(port: u16, got: Arc<Mutex<Vec<Got>>>, mode: Arc<AtomicU8>) -> Receiver {
        Receiver::scripted(port, got, mode, default_script()).await
    }

    /// Like [`Receiver::start`], answering as `script` says where it says.
    async fn scripted(
        port: u16,
        got: Arc<Mutex<Vec<Got>>>,
        mode: Arc<AtomicU8>,
        script: Script,
    ) -> Receiver {
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (g, m) = (got.clone(), mode.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, m, script) = (g.clone(), m.clone(), script.clone());
                    async move {
                        let header = |k: &str| {
                            headers
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let t = verified(&header("x-wa-gateway-signature"), &body, HOOK_SECRET);
                        let t = t.expect("a fresh, valid signature");
                        let failing = m.load(Ordering::SeqCst) == FAILING;
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        g.lock().unwrap().push(Got {
                            id_header: header("x-wa-gateway-event-id"),
                            attempt: header("x-wa-gateway-attempt").parse().unwrap(),
                            t,
                            answered: if failing { 500 } else { 200 },
                            body: v.clone(),
                            raw: body.to_vec(),
                        });
                        if failing {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new())
                                .into_response();
                        }
                        if let Some(answer) = script(&v) {
                            return answer;
                        }
                        let answer = if v["data"]["message"].as_str() == Some("ping") {
                            json!({ "reply": "pong" }).to_string()
                        } else {
                            "ok".to_owned()
                        };
                        (axum::http::StatusCode::OK, answer).into_response()
                    }
                },
            ),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            port,
            stop: Some(tx),
            done,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.done.await;
    }
}

/// The service's options for these tests: their receivers run on loopback, so private
/// addresses are allowed (the product setting `WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE`).
fn options(webhooks: WebhookSettings) -> ServiceOptions {
    ServiceOptions {
        webhooks: WebhookSettings {
            allow_private: true,
            ..webhooks
        },
        ..public_only(WebhookSettings::default())
    }
}

/// As [`options`], with `webhooks` as given (private addresses refused by default); the
/// service options every REST test starts from.
pub(crate) fn public_only(webhooks: WebhookSettings) -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        },
        webhooks,
        // Tests poll the API faster than its rate limits allow.
        unpaced: vec!["sub1".into(), "sub2".into(), "sub4".into(), "sub5".into()],
        ..Default::default()
    }
}

/// Events of `kind` the receiver got, in arrival order.
fn of_kind(got: &Mutex<Vec<Got>>, kind: &str) -> Vec<Got> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|g| g.body["event"] == json!(kind))
        .cloned()
        .collect()
}

/// Where the first event carrying `text` arrived.
fn position(got: &[Got], text: &str) -> Option<usize> {
    got.iter()
        .position(|g| g.body["data"]["message"].as_str() == Some(text))
}

#[tokio::test]
async fn events_arrive_signed_and_in_order_through_an_outage_and_a_restart_and_a_reply_goes_out() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let settings = WebhookSettings {
            timeout: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..Default::default()
        };
        let server = Server::start_opts(&sim, &db, options(settings.clone())).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob, carol) = ("15552000001", "15552000002", "15552000003");
        let got = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(UP));
        let receiver = Receiver::start(0, got.clone(), mode.clone()).await;

        // Set before the first connect: the connection's own events come too.
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({ "url": receiver.url(), "secret": HOOK_SECRET })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_envelope(&v, true);
        assert_eq!(v["data"]["url"], json!(receiver.url()));
        assert_eq!(
            v["data"]["events"],
            json!([
                "message.received",
                "message.status",
                "connection.update",
                "message.reaction",
                "message.edited",
                "message.revoked",
                "message.undecryptable"
            ])
        );
        assert!(
            !v.to_string().contains(HOOK_SECRET),
            "the secret is never shown: {v}"
        );
        let (_, shown) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(shown["data"]["url"], v["data"]["url"]);
        assert!(!shown.to_string().contains(HOOK_SECRET));

        link(&sim, &http, &admin, &base, me).await;
        eventually("a connected event", async || {
            of_kind(&got, "connection.update")
                .iter()
                .any(|g| g.body["data"]["status"] == json!("connected"))
                .then_some(())
        })
        .await;

        // An inbound message: the body names the account and carries the history's fields.
        let id1 = sim.phone_send(bob, me, "hello 1").await.unwrap();
        let first = eventually("hello 1", async || {
            of_kind(&got, "message.received")
                .into_iter()
                .find(|g| g.body["data"]["message"] == json!("hello 1"))
        })
        .await;
        let b = &first.body;
        assert_eq!(first.id_header, b["id"].as_str().unwrap());
        assert_eq!(b["id"].as_str().unwrap().len(), 26, "a ULID");
        assert_eq!(
            (&b["subaccountId"], &b["agentId"]),
            (&json!("sub1"), &json!("agent1"))
        );
        assert_eq!(b["data"]["from"], json!(format!("{bob}@c.us")));
        assert_eq!(b["data"]["direction"], json!("inbound"));
        assert!(b["data"]["messageId"].as_str().unwrap().ends_with(&id1));
        assert_eq!(first.attempt, 1);

        // An outbound message: its ladder arrives in order.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "out 1" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let sent_id = v["data"]["messageId"].clone();
        let ladder = eventually("server_ack then delivered", async || {
            let steps: Vec<Value> = of_kind(&got, "message.status")
                .iter()
                .filter(|g| g.body["data"]["messageId"] == sent_id)
                .map(|g| g.body["data"]["status"].clone())
                .collect();
            steps.contains(&json!("delivered")).then_some(steps)
        })
        .await;
        assert_eq!(ladder[0], json!("server_ack"), "{ladder:?}");

        // The receiver goes away; four messages from two chats wait for it.
        let port = receiver.port;
        receiver.stop().await;
        for t in ["b2", "b3", "b4"] {
            sim.phone_send(bob, me, t).await.unwrap();
        }
        sim.phone_send(carol, me, "c1").await.unwrap();
        eventually("attempts that failed", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/webhook/deliveries?status=pending"),
                Some(&admin),
                None,
            )
            .await;
            let list = v["data"]["deliveries"].as_array()?.clone();
            let tried: Vec<&Value> = list
                .iter()
                .filter(|d| d["attempts"].as_i64() >= Some(2))
                .collect();
            // Why it failed, without the URL (it may carry credentials).
            for d in &tried {
                let why = d["lastError"].as_str().unwrap_or_default();
                assert!(why.starts_with("cannot connect"), "{why}");
                assert!(!why.contains(&format!(":{port}")), "{why}");
            }
            let tried = tried.len();
            // bob's head and carol's head are tried; the rest of bob's chat waits its turn.
            (list.len() == 4 && tried == 2).then_some(())
        })
        .await;
        assert!(position(&of_kind(&got, "message.received"), "b2").is_none());

        // The service restarts too; then the receiver comes back on the same port.
        server.stop().await;
        let server = Server::start_opts(&sim, &db, options(settings.clone())).await;
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let receiver = Receiver::start(port, got.clone(), mode.clone()).await;
        let inbound = eventually("every waiting event", async || {
            let g = of_kind(&got, "message.received");
            ["b2", "b3", "b4", "c1"]
                .iter()
                .all(|t| position(&g, t).is_some())
                .then_some(g)
        })
        .await;
        let (p2, p3, p4) = (
            position(&inbound, "b2").unwrap(),
            position(&inbound, "b3").unwrap(),
            position(&inbound, "b4").unwrap(),
        );
        assert!(p2 < p3 && p3 < p4, "bob's chat in order: {p2} {p3} {p4}");
        // None lost, and every delivery of one event carries the same id and bytes.
        let all = got.lock().unwrap().clone();
        for g in &all {
            for h in all.iter().filter(|h| h.id_header == g.id_header) {
                assert_eq!(h.raw, g.raw, "same event, same body");
            }
        }

        // A reply: the receiver answers `pong` to `ping`; bob gets it once, even when the
        // event is delivered again.
        sim.phone_send(bob, me, "ping").await.unwrap();
        let ping = eventually("ping at the receiver", async || {
            of_kind(&got, "message.received")
                .into_iter()
                .find(|g| g.body["data"]["message"] == json!("ping"))
        })
        .await;
        let pongs = || {
            sim.phone_messages(bob)
                .into_iter()
                .filter(|m| m.text.as_deref() == Some("pong"))
                .count()
        };
        eventually("bob gets pong", async || (pongs() == 1).then_some(())).await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/webhook/deliveries/{}/redeliver", ping.id_header),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["id"], json!(ping.id_header));
        eventually("delivered again", async || {
            let n = of_kind(&got, "message.received")
                .iter()
                .filter(|g| g.id_header == ping.id_header)
                .count();
            (n >= 2).then_some(())
        })
        .await;
        // The outbox holds one reply for the event: a second would have gone by now.
        let (_, history) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages?limit=50"),
            Some(&admin),
            None,
        )
        .await;
        let replies = history["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["message"] == json!("pong"))
            .count();
        assert_eq!(replies, 1, "{history}");
        assert_eq!(pongs(), 1);

        receiver.stop().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_failing_receiver_dead_letters_and_redelivery_sends_the_same_body() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let settings = WebhookSettings {
            timeout: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(200),
            dead_after: Duration::from_secs(1),
            ..Default::default()
        };
        let server = Server::start_opts(&sim, &db, options(settings)).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub2/agent2", server.url);
        let (me, bob) = ("15553000001", "15553000002");
        let got = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(FAILING));
        let receiver = Receiver::start(0, got.clone(), mode.clone()).await;
        link(&sim, &http, &admin, &base, me).await;
        // Only inbound messages: no status or connection event is queued.
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({
                "url": receiver.url(),
                "secret": HOOK_SECRET,
                "events": ["message.received"],
            })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        sim.phone_send(bob, me, "x").await.unwrap();
        let dead = eventually("dead-lettered", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/webhook/deliveries?status=failed"),
                Some(&admin),
                None,
            )
            .await;
            let d = v["data"]["deliveries"].as_array()?.first()?.clone();
            Some(d)
        })
        .await;
        assert!(dead["attempts"].as_i64().unwrap() >= 2, "{dead}");
        assert_eq!(dead["lastStatus"], json!(500));
        assert_eq!(dead["event"], json!("message.received"));
        assert_eq!(dead["nextAttemptAt"], Value::Null);
        let (_, all) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook/deliveries"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(all["data"]["count"], json!(1), "{all}");
        let failed = got.lock().unwrap().clone();
        assert!(failed.len() >= 2 && failed.iter().all(|g| g.answered == 500));
        // Viewers learn how it failed, not what the receiver said.
        let viewer = token(Role::Viewer, &["sub2"], 3600);
        let (_, seen) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook/deliveries?status=failed"),
            Some(&viewer),
            None,
        )
        .await;
        assert_eq!(
            seen["data"]["deliveries"][0]["lastError"],
            json!("HTTP 500"),
            "{seen}"
        );

        // Back up; redelivery sends the very body that failed, under the same id, signed
        // afresh.
        mode.store(UP, Ordering::SeqCst);
        let id = dead["id"].as_str().unwrap();
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/webhook/deliveries/{id}/redeliver"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let g = eventually("redelivered", async || {
            got.lock()
                .unwrap()
                .iter()
                .find(|g| g.answered == 200)
                .cloned()
        })
        .await;
        assert_eq!(g.id_header, id);
        assert_eq!(g.body, dead["payload"]);
        assert_eq!(g.raw, failed[0].raw, "the same bytes");
        // The event waited past its dead-letter time (1 s) since its first attempt: a signature
        // made then would be stale by now; this one is made at this attempt.
        assert!(g.t > failed[0].t, "{} after {}", g.t, failed[0].t);
        assert_eq!(g.attempt, 1, "a redelivery starts counting again");
        eventually("recorded as delivered", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/webhook/deliveries?status=delivered"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["count"] == json!(1)).then_some(())
        })
        .await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/webhook/deliveries/01ARZ3NDEKTSV4RRFFQ69G5FAV/redeliver"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (404, json!("event_not_found"))
        );

        // Removed: nothing more is queued for it.
        let (code, _) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{base}/webhook"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200);
        sim.phone_send(bob, me, "y").await.unwrap();
        eventually("y stored", async || {
            let (_, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{base}/messages"),
                Some(&admin),
                None,
            )
            .await;
            v["data"]["messages"]
                .as_array()?
                .iter()
                .any(|m| m["message"] == json!("y"))
                .then_some(())
        })
        .await;
        let (_, all) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/webhook/deliveries"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(all["data"]["count"], json!(1), "{all}");
        receiver.stop().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn webhook_endpoints_check_roles_tenants_and_every_field() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, options(WebhookSettings::default())).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let viewer = token(Role::Viewer, &["sub3"], 3600);
        let other = token(Role::Member, &["elsewhere"], 3600);
        let hook = format!("{}/api/whatsapp/sub3/agent3/webhook", server.url);
        let good = json!({ "url": "https://example.invalid/hook", "secret": HOOK_SECRET });
        let put = |t: Option<String>, body: Value| {
            let (http, hook) = (http.clone(), hook.clone());
            async move { call(&http, reqwest::Method::PUT, &hook, t.as_deref(), Some(body)).await }
        };
        assert_eq!(put(None, good.clone()).await.0, 401);
        assert_eq!(put(Some(viewer.clone()), good.clone()).await.0, 403);
        assert_eq!(put(Some(other.clone()), good.clone()).await.0, 403);
        let (code, v) = call(&http, reqwest::Method::GET, &hook, Some(&other), None).await;
        assert_eq!(code, 403, "{v}");
        for (body, code) in [
            (json!({ "secret": HOOK_SECRET }), "missing_url"),
            (json!({ "url": 5, "secret": HOOK_SECRET }), "invalid_url"),
            (json!({ "url": "ftp://x.test/h", "secret": HOOK_SECRET }), "invalid_url"),
            (json!({ "url": "not a url", "secret": HOOK_SECRET }), "invalid_url"),
            (json!({ "url": format!("https://x.test/{}", "a".repeat(3000)), "secret": HOOK_SECRET }), "invalid_url"),
            (json!({ "url": "https://x.test/h" }), "missing_secret"),
            (json!({ "url": "https://x.test/h", "secret": "short" }), "invalid_secret"),
            (json!({ "url": "https://x.test/h", "secret": 12345678901234567u64 }), "invalid_secret"),
            (json!({ "url": "https://x.test/h", "secret": HOOK_SECRET, "events": [] }), "invalid_events"),
            (json!({ "url": "https://x.test/h", "secret": HOOK_SECRET, "events": ["nope"] }), "invalid_events"),
            (json!({ "url": "https://x.test/h", "secret": HOOK_SECRET, "events": "message.received" }), "invalid_events"),
            (json!([1, 2]), "invalid_json"),
        ] {
            let (status, v) = put(Some(admin.clone()), body.clone()).await;
            assert_eq!((status, v["error"]["code"].clone()), (400, json!(code)), "{body}: {v}");
            assert_envelope(&v, false);
        }
        let raw = http
            .put(&hook)
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status().as_u16(), 400);
        // Nothing of all that was stored.
        let (code, v) = call(&http, reqwest::Method::GET, &hook, Some(&viewer), None).await;
        assert_eq!((code, v["error"]["code"].clone()), (404, json!("webhook_not_found")));
        for q in ["status=bogus", "limit=0", "skip=-1", "limit=501"] {
            let (code, v) = call(
                &http,
                reqwest::Method::GET,
                &format!("{hook}/deliveries?{q}"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(code, 400, "{q}: {v}");
        }
        // A member sets it; a viewer reads it, without its secret; deleting twice is a 404.
        let (code, v) = put(Some(admin.clone()), good.clone()).await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = call(&http, reqwest::Method::GET, &hook, Some(&viewer), None).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["url"], json!("https://example.invalid/hook"));
        assert_eq!(v["data"]["createdBy"], json!("user-1"));
        assert!(!v.to_string().contains(HOOK_SECRET));
        let (code, _) = call(&http, reqwest::Method::DELETE, &hook, Some(&viewer), None).await;
        assert_eq!(code, 403);
        let (code, _) = call(&http, reqwest::Method::DELETE, &hook, Some(&admin), None).await;
        assert_eq!(code, 200);
        let (code, v) = call(&http, reqwest::Method::DELETE, &hook, Some(&admin), None).await;
        assert_eq!((code, v["error"]["code"].clone()), (404, json!("webhook_not_found")));
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// The deliveries of `base`'s webhook as `token` sees them.
async fn deliveries(http: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let (code, v) = call(
        http,
        reqwest::Method::GET,
        &format!("{base}/webhook/deliveries?limit=500"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["data"]["deliveries"].as_array().unwrap().clone()
}

/// The delivery of the inbound message `text`.
fn delivery_of<'a>(list: &'a [Value], text: &str) -> Option<&'a Value> {
    list.iter()
        .find(|d| d["payload"]["data"]["message"].as_str() == Some(text))
}

/// The longest text a reply may carry (the client's limit, in bytes).
const MAX_TEXT: usize = wa_gateway::client::messenger::MAX_TEXT_BYTES;

#[tokio::test]
async fn answers_are_read_whole_a_maximal_reply_goes_out_and_ignored_replies_say_why() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let settings = WebhookSettings {
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(300),
            ..Default::default()
        };
        let server = Server::start_opts(&sim, &db, options(settings)).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let viewer = token(Role::Viewer, &["sub4"], 3600);
        let base = format!("{}/api/whatsapp/sub4/agent4", server.url);
        let (me, bob, carol, dave, erin) = (
            "15554000001",
            "15554000002",
            "15554000003",
            "15554000004",
            "15554000005",
        );
        // The longest reply there is, escaped as a receiver may escape any character
        // (`\u0078` for `x`, RFC 8259 §7): six bytes of answer per byte of text.
        let longest = "x".repeat(MAX_TEXT);
        let escaped = format!("{{\"reply\": \"{}\"}}", "\\u0078".repeat(MAX_TEXT));
        let script: Script = Arc::new(move |v: &Value| {
            use axum::response::IntoResponse;
            let ok = |body: String| Some((axum::http::StatusCode::OK, body).into_response());
            if v["event"] == json!("message.status") {
                // Status events cannot be replied to.
                return ok(json!({ "reply": "to a status?" }).to_string());
            }
            match v["data"]["message"].as_str()? {
                "longest" => ok(escaped.clone()),
                "garbage" => ok("<html>thanks</html>".into()),
                "blank" => ok(json!({ "reply": "   " }).to_string()),
                "number" => ok(json!({ "reply": 5 }).to_string()),
                "too long" => ok(json!({ "reply": "y".repeat(MAX_TEXT + 1) }).to_string()),
                "nothing" => ok(json!({ "seen": true }).to_string()),
                // More than any reply needs: not taken as an answer.
                "huge" => ok(" ".repeat(4 * 1024 * 1024)),
                // The answer's body breaks off after its first bytes went out (a body that is
                // not ready lets the server flush what it has; then the error drops the
                // connection).
                "broken" => {
                    let parts = futures_util::stream::unfold(0u8, |step| async move {
                        match step {
                            0 => {
                                Some((Ok(axum::body::Bytes::from_static(b"{\"reply\": \"half")), 1))
                            }
                            1..=3 => {
                                tokio::task::yield_now().await;
                                Some((Ok(axum::body::Bytes::new()), step + 1))
                            }
                            _ => Some((Err(std::io::Error::other("the receiver fell over")), 9)),
                        }
                    });
                    Some(
                        (
                            axum::http::StatusCode::OK,
                            axum::body::Body::from_stream(parts),
                        )
                            .into_response(),
                    )
                }
                // Sent on elsewhere: redirects are not followed.
                "moved" => Some(
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", "/hook")],
                        String::new(),
                    )
                        .into_response(),
                ),
                _ => None,
            }
        });
        let got = Arc::new(Mutex::new(Vec::new()));
        let receiver =
            Receiver::scripted(0, got.clone(), Arc::new(AtomicU8::new(UP)), script).await;
        link(&sim, &http, &admin, &base, me).await;
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({ "url": receiver.url(), "secret": HOOK_SECRET })),
        )
        .await;
        assert_eq!(code, 200, "{v}");

        // Answers that cannot be taken, each in a chat of its own (a chat's next event waits).
        sim.phone_send(carol, me, "huge").await.unwrap();
        sim.phone_send(dave, me, "broken").await.unwrap();
        sim.phone_send(erin, me, "moved").await.unwrap();
        for t in [
            "longest", "garbage", "blank", "number", "too long", "nothing",
        ] {
            sim.phone_send(bob, me, t).await.unwrap();
        }
        let list = eventually("every answer read", async || {
            let list = deliveries(&http, &base, &admin).await;
            let retried = ["huge", "broken", "moved"]
                .iter()
                .all(|t| delivery_of(&list, t).is_some_and(|d| d["attempts"].as_i64() >= Some(2)));
            let taken = [
                "longest", "garbage", "blank", "number", "too long", "nothing",
            ]
            .iter()
            .all(|t| delivery_of(&list, t).is_some_and(|d| d["state"] == json!("delivered")));
            (retried && taken).then_some(list)
        })
        .await;
        for (text, why) in [
            ("huge", "larger than"),
            ("broken", "could not be read"),
            ("moved", "307"),
        ] {
            let d = delivery_of(&list, text).unwrap();
            assert_eq!(d["state"], json!("pending"), "{d}");
            let error = d["lastError"].as_str().unwrap();
            assert!(error.contains(why), "{text}: {error}");
            assert!(!error.contains(&receiver.port.to_string()), "{error}");
        }
        assert_eq!(
            delivery_of(&list, "moved").unwrap()["lastStatus"],
            json!(307)
        );
        // Why each taken answer's reply was not sent.
        for (text, why) in [
            ("garbage", Value::from("not_json")),
            ("blank", Value::from("empty")),
            ("number", Value::from("not_text")),
            ("too long", Value::from("too_long")),
            ("nothing", Value::from("no_reply")),
            ("longest", Value::Null),
        ] {
            let d = delivery_of(&list, text).unwrap();
            assert_eq!(d["replyIgnored"], why, "{text}: {d}");
        }
        // The longest reply went out whole.
        eventually("bob gets the longest reply", async || {
            sim.phone_messages(bob)
                .into_iter()
                .find(|m| m.text.as_deref() == Some(longest.as_str()))
        })
        .await;
        let status = eventually("a status event answered with a reply", async || {
            deliveries(&http, &base, &admin)
                .await
                .into_iter()
                .find(|d| d["event"] == json!("message.status") && d["state"] == json!("delivered"))
        })
        .await;
        assert_eq!(status["replyIgnored"], json!("not_repliable"), "{status}");
        // No reply was queued for any of the others.
        assert!(
            !sim.phone_messages(bob)
                .iter()
                .any(|m| m.text.as_deref() == Some("to a status?")),
        );

        // Viewers see how an attempt failed, never the detail.
        let seen = deliveries(&http, &base, &viewer).await;
        for (text, coarse) in [
            ("huge", "answer unreadable"),
            ("broken", "answer unreadable"),
            ("moved", "HTTP 307"),
        ] {
            assert_eq!(
                delivery_of(&seen, text).unwrap()["lastError"],
                json!(coarse),
                "{text}"
            );
        }
        receiver.stop().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn webhooks_reach_no_private_address_unless_allowed() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let settings = WebhookSettings {
            timeout: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(300),
            ..Default::default()
        };
        // The default: private addresses refused.
        let server = Server::start_opts(&sim, &db, public_only(settings.clone())).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let viewer = token(Role::Viewer, &["sub5"], 3600);
        let base = format!("{}/api/whatsapp/sub5/agent5", server.url);
        let (me, bob) = ("15555000001", "15555000002");
        let got = Arc::new(Mutex::new(Vec::new()));
        let receiver = Receiver::start(0, got.clone(), Arc::new(AtomicU8::new(UP))).await;
        let port = receiver.port;
        let put = |base: &str, url: String| {
            let (http, admin, hook) = (http.clone(), admin.clone(), format!("{base}/webhook"));
            async move {
                call(
                    &http,
                    reqwest::Method::PUT,
                    &hook,
                    Some(&admin),
                    Some(json!({ "url": url, "secret": HOOK_SECRET })),
                )
                .await
            }
        };
        // Addresses as literals are refused when set.
        for host in [
            "127.0.0.1",
            "127.9.9.9",
            "2130706433",
            "0x7f.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "[::1]",
            "[::]",
            "[fc00::1]",
            "[fd00:ec2::254]",
            "[fe80::1]",
            "[ff02::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]",
            "[::ffff:10.0.0.1]",
            "[2001:db8::1]",
        ] {
            let (code, v) = put(&base, format!("http://{host}:{port}/hook")).await;
            assert_eq!(
                (code, v["error"]["code"].clone()),
                (400, json!("webhook_url_not_allowed")),
                "{host}: {v}"
            );
            assert_envelope(&v, false);
        }
        // Public addresses are fine (nothing is sent at set time).
        for host in [
            "93.184.215.14",
            "[2606:4700:4700::1111]",
            "hooks.example.com",
        ] {
            let (code, v) = put(&base, format!("https://{host}/hook")).await;
            assert_eq!(code, 200, "{host}: {v}");
        }
        // A name is checked where it leads, at each attempt: `localhost` resolves to loopback.
        let (code, v) = put(&base, format!("http://localhost:{port}/hook")).await;
        assert_eq!(code, 200, "{v}");
        link(&sim, &http, &admin, &base, me).await;
        sim.phone_send(bob, me, "hello").await.unwrap();
        let list = eventually("attempts refused", async || {
            let list = deliveries(&http, &base, &admin).await;
            delivery_of(&list, "hello")
                .is_some_and(|d| d["attempts"].as_i64() >= Some(2))
                .then_some(list)
        })
        .await;
        for d in &list {
            assert_eq!(d["state"], json!("pending"), "{d}");
            let error = d["lastError"].as_str().unwrap_or_default();
            if d["attempts"].as_i64() >= Some(1) {
                assert!(error.contains("not allowed"), "{error}");
                assert!(!error.contains("localhost") && !error.contains(&port.to_string()));
            }
        }
        let seen = deliveries(&http, &base, &viewer).await;
        let hello = delivery_of(&seen, "hello").unwrap();
        assert_eq!(hello["lastError"], json!("address not allowed"), "{hello}");
        assert!(
            got.lock().unwrap().is_empty(),
            "nothing reached the receiver"
        );

        // Allowed (a receiver on the deployment's own network): what waited arrives.
        server.stop().await;
        let server = Server::start_opts(&sim, &db, options(settings.clone())).await;
        let base = format!("{}/api/whatsapp/sub5/agent5", server.url);
        eventually("hello at the receiver", async || {
            position(&of_kind(&got, "message.received"), "hello")
        })
        .await;
        let (code, v) = put(&base, format!("http://127.0.0.1:{port}/hook")).await;
        assert_eq!(code, 200, "{v}");

        // Refused again: a literal already stored is checked at each attempt too.
        server.stop().await;
        let server = Server::start_opts(&sim, &db, public_only(settings)).await;
        let base = format!("{}/api/whatsapp/sub5/agent5", server.url);
        sim.phone_send(bob, me, "after").await.unwrap();
        let d = eventually("after refused", async || {
            let list = deliveries(&http, &base, &admin).await;
            delivery_of(&list, "after")
                .filter(|d| d["attempts"].as_i64() >= Some(1))
                .cloned()
        })
        .await;
        assert!(
            d["lastError"].as_str().unwrap().contains("not allowed"),
            "{d}"
        );
        assert!(position(&of_kind(&got, "message.received"), "after").is_none());
        receiver.stop().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}
