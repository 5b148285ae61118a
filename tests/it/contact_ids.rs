//! Every message row, webhook and send answer names a contact by phone number and by LID
//! (issue 23): `fromPn`/`fromLid`/`toPn`/`toLid` from the account's PN↔LID mappings, null where
//! a form is not known (never an error).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wa_gateway::api::auth::Role;
use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::{CredsStore, MessageStatus, StoredMessage};
use wa_gateway::service::{ServiceOptions, WebhookSettings};
use wa_gateway::signal::SignalChanges;
use wa_gateway::sim::Simulator;
use wa_gateway::store::Store;

use crate::messaging::eventually;
use crate::rest::{Server as Gateway, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);
/// The webhook secret these tests set.
pub(crate) const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// A loopback webhook receiver keeping every body it got (signatures are webhooks.rs's
/// business).
pub(crate) struct Hook {
    pub(crate) url: String,
    pub(crate) got: Arc<Mutex<Vec<Value>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Hook {
    pub(crate) async fn start() -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        g.lock().unwrap().push(v);
                    }
                    "ok"
                }
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Hook {
            url,
            got,
            stop: Some(tx),
        }
    }

    /// The first event of `kind` whose `data` satisfies `f`.
    pub(crate) fn find(&self, kind: &str, f: impl Fn(&Value) -> bool) -> Option<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["event"] == json!(kind) && f(&v["data"]))
            .cloned()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The REST tests' service options with loopback webhooks allowed.
pub(crate) fn options() -> ServiceOptions {
    ServiceOptions {
        webhooks: WebhookSettings {
            allow_private: true,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..WebhookSettings::default()
        },
        ..crate::webhooks::public_only(WebhookSettings::default())
    }
}

/// Sets `base`'s webhook to `hook`.
pub(crate) async fn set_hook(http: &reqwest::Client, admin: &str, base: &str, hook: &Hook) {
    let (code, v) = call(
        http,
        Method::PUT,
        &format!("{base}/webhook"),
        Some(admin),
        Some(json!({ "url": hook.url, "secret": HOOK_SECRET })),
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

/// The history row (GET …/messages) whose text is `text`, once there.
pub(crate) async fn row(http: &reqwest::Client, admin: &str, base: &str, text: &str) -> Value {
    eventually(text, async || {
        let (code, v) = call(
            http,
            Method::GET,
            &format!("{base}/messages?limit=100"),
            Some(admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        v["data"]["messages"]
            .as_array()?
            .iter()
            .find(|m| m["message"] == json!(text))
            .cloned()
    })
    .await
}

#[tokio::test]
async fn rows_webhooks_and_send_answers_name_contacts_by_phone_number_and_lid() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Gateway::start_opts(&sim, &db, options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob, carol) = ("15550091000", "15550091001", "15550091002");
        sim.set_devices(bob, 1).unwrap();
        sim.set_devices(carol, 1).unwrap();
        let hook = Hook::start().await;
        set_hook(&http, &admin, &base, &hook).await;
        link(&sim, &http, &admin, &base, me).await;
        let lid = |n: &str| format!("{}@lid", sim.lid_of(n).expect("a simulated LID"));
        let pn = |n: &str| format!("{n}@c.us");

        // An inbound message: its sender's LID comes with it (`sender_lid`), so the row names
        // bob both ways, and the account itself as the recipient.
        sim.phone_send(bob, me, "hello by both names")
            .await
            .unwrap();
        let m = row(&http, &admin, &base, "hello by both names").await;
        assert_eq!(m["from"], json!(pn(bob)), "{m}");
        assert_eq!(m["fromPn"], json!(pn(bob)), "{m}");
        assert_eq!(m["fromLid"], json!(lid(bob)), "{m}");
        assert_eq!(m["toPn"], json!(pn(me)), "{m}");
        assert_eq!(m["toLid"], json!(lid(me)), "{m}");
        assert_eq!(m["error"], Value::Null);
        // The webhook carries the same names.
        let w = eventually("the message.received webhook", async || {
            hook.find("message.received", |d| {
                d["message"] == json!("hello by both names")
            })
        })
        .await;
        for k in ["from", "fromPn", "fromLid", "toPn", "toLid"] {
            assert_eq!(w["data"][k], m[k], "{k}: {w}");
        }

        // A send answer names the recipient's LID: bob's known before, carol's learnt by the
        // send's device query.
        for (n, text) in [(bob, "hi bob"), (carol, "hi carol")] {
            let (code, v) = call(
                &http,
                Method::POST,
                &format!("{base}/send"),
                Some(&admin),
                Some(json!({ "to": n, "message": text })),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            assert_eq!(v["data"]["status"], json!("server_ack"), "{v}");
            assert_eq!(v["data"]["toPn"], json!(pn(n)), "{v}");
            assert_eq!(v["data"]["toLid"], json!(lid(n)), "{v}");
            // Its row: the account is the author, the contact the recipient.
            let r = row(&http, &admin, &base, text).await;
            assert_eq!(r["fromPn"], json!(pn(me)), "{r}");
            assert_eq!(r["fromLid"], json!(lid(me)), "{r}");
            assert_eq!(r["toPn"], json!(pn(n)), "{r}");
            assert_eq!(r["toLid"], json!(lid(n)), "{r}");
            // Its status webhook names the recipient both ways too.
            let mid = v["data"]["messageId"].clone();
            let s = eventually("the message.status webhook", async || {
                hook.find("message.status", |d| d["messageId"] == mid)
            })
            .await;
            assert_eq!(s["data"]["toPn"], json!(pn(n)), "{s}");
            assert_eq!(s["data"]["toLid"], json!(lid(n)), "{s}");
        }

        // A contact whose LID the account never learnt: its phone number, and a null LID.
        let store = Store::open(&db).await.unwrap();
        let account = store.account("sub1", "agent1").await.unwrap();
        let stranger = Jid::new("4915550099", Server::User);
        let msg = StoredMessage {
            id: "3EB0NOLIDKNOWN".into(),
            chat: stranger.clone(),
            sender: stranger.clone(),
            timestamp: wa_gateway::util::clock::now_ms() / 1000,
            text: Some("from a number without a LID".into()),
            raw: vec![1],
            status: MessageStatus::Received,
            ..StoredMessage::default()
        };
        store
            .creds(account)
            .commit_message(&SignalChanges::default(), &msg)
            .await
            .unwrap();
        let r = row(&http, &admin, &base, "from a number without a LID").await;
        assert_eq!(r["fromPn"], json!("4915550099@c.us"), "{r}");
        assert_eq!(r["fromLid"], Value::Null, "{r}");
        assert_eq!(r["toLid"], json!(lid(me)), "{r}");
        server.stop().await;
    })
    .await
    .expect("in time");
}
