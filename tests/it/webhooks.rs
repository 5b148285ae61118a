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
    body: Value,
    raw: Vec<u8>,
}

/// The receiver answers 200 (`UP`), 500 (`FAILING`), and replies `pong` to a `ping`.
const UP: u8 = 0;
const FAILING: u8 = 1;

struct Receiver {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `port` (any when None), keeping what it got in `got`.
    async fn start(port: u16, got: Arc<Mutex<Vec<Got>>>, mode: Arc<AtomicU8>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (g, m) = (got.clone(), mode.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, m) = (g.clone(), m.clone());
                    async move {
                        let header = |k: &str| {
                            headers
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        // The receiver's own check, as README tells users to write it.
                        let mut mac =
                            Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
                        mac.update(&body);
                        let expected = format!(
                            "sha256={}",
                            mac.finalize()
                                .into_bytes()
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        );
                        assert_eq!(header("x-wa-gateway-signature"), expected, "signature");
                        if m.load(Ordering::SeqCst) == FAILING {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new());
                        }
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        let ping = v["data"]["message"].as_str() == Some("ping");
                        g.lock().unwrap().push(Got {
                            id_header: header("x-wa-gateway-event-id"),
                            attempt: header("x-wa-gateway-attempt").parse().unwrap(),
                            body: v,
                            raw: body.to_vec(),
                        });
                        let answer = if ping {
                            json!({ "reply": "pong" }).to_string()
                        } else {
                            "ok".to_owned()
                        };
                        (axum::http::StatusCode::OK, answer)
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

fn options(webhooks: WebhookSettings) -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        },
        webhooks,
        // Tests poll the API faster than its rate limits allow.
        unpaced: vec!["sub1".into(), "sub2".into()],
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
            json!(["message.received", "message.status", "connection.update"])
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
        assert!(got.lock().unwrap().is_empty());

        // Back up; redelivery sends the very body that failed, under the same id.
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
        let g = eventually("redelivered", async || got.lock().unwrap().first().cloned()).await;
        assert_eq!(g.id_header, id);
        assert_eq!(g.body, dead["payload"]);
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
