//! kill -9 of the service mid-work, then a restart over the same data directory. Sends accepted
//! but not acked (the simulator, its own process so it outlives the service, withholds our
//! acks): every one reaches the simulated user exactly once, and goes on the wire once more at
//! most than it had before the kill (the simulator routes every stanza it accepts and counts
//! them, as WhatsApp acks and routes each). Webhook events in flight arrive, in order. A file
//! killed mid-upload or mid-download (the simulated CDN on a slow link) ends sent or kept
//! byte for byte, and the media store holds no half file and no blob no row names. App state
//! killed mid-sync is stored whole (version, LTHash and records of one patch) and catches up.
//! A history chunk acknowledged but not yet stored at the kill is stored whole after the
//! restart, and the phone gets its `hist_sync` receipt.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

mod procs;
use procs::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_accepted_before_a_kill_9_arrive_once_after_the_restart() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let http = reqwest::Client::new();
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let control = info["control_url"].as_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let api = format!(
            "{}/api/whatsapp/sub/agent",
            listening["listening"].as_str().unwrap()
        );
        let token = String::from_utf8(
            std::process::Command::new(BIN)
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
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        let (me, bob) = ("15553000001", "15553000002");
        let post = |url: String, body: Value| {
            let (http, token) = (http.clone(), token.clone());
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        assert_eq!(
            post(
                format!("{control}/phones/{bob}/devices"),
                json!({ "count": 2 })
            )
            .await
            .0,
            200
        );
        let (code, v) = post(format!("{api}/connect"), json!({})).await;
        assert_eq!(code, 200, "{v}");
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        let (code, _) = post(format!("{control}/phones/{me}/scan"), json!({ "qr": qr })).await;
        assert_eq!(code, 200);
        until("connected", async || {
            let v: Value = http
                .get(format!("{api}/status"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["data"]["isConnected"] == json!(true)).then_some(())
        })
        .await;
        // Its prekeys reach the server right after login.
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // The server holds our messages unacked; 100 sends are accepted (answered pending).
        let fault = |on: bool| json!({ "account": me, "fault": "withhold_acks", "on": on });
        assert_eq!(post(format!("{control}/faults"), fault(true)).await.0, 200);
        let mut ids = Vec::new();
        for i in 0..100 {
            let (code, v) = post(
                format!("{api}/send"),
                json!({ "to": bob, "message": format!("crash {i}"), "wait": false }),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            assert_eq!(v["data"]["status"], json!("pending"));
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
        // Once the drain has put the first on the wire (held by the server), kill -9; what each
        // id had transmitted by then is noted.
        let stanzas = |id: String| {
            let (http, control) = (http.clone(), control.clone());
            async move {
                http.get(format!("{control}/stanzas?id={id}"))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        until("the first on the wire", async || {
            (stanzas(ids[0].clone()).await["held"].as_u64() >= Some(1)).then_some(())
        })
        .await;
        server.kill().await.unwrap();
        let mut before = Vec::new();
        for id in &ids {
            let s = stanzas(id.clone()).await;
            assert_eq!(s["originals"], json!(0), "nothing acked yet: {s}");
            before.push(s["held"].as_u64().unwrap());
        }

        // Restart over the same data directory; the server lets our messages through again.
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let api = format!(
            "{}/api/whatsapp/sub/agent",
            listening["listening"].as_str().unwrap()
        );
        assert_eq!(post(format!("{control}/faults"), fault(false)).await.0, 200);
        let got = until("every accepted send at bob's", async || {
            let m: Vec<Value> = http
                .get(format!("{control}/phones/{bob}/messages"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            ids.iter()
                .all(|id| m.iter().any(|x| x["id"] == json!(id)))
                .then_some(m)
        })
        .await;
        for (i, id) in ids.iter().enumerate() {
            let copies: Vec<&Value> = got.iter().filter(|x| x["id"] == json!(id)).collect();
            assert_eq!(copies.len(), 1, "message {i} once");
            assert_eq!(copies[0]["text"], json!(format!("crash {i}")));
        }
        assert_eq!(got.len(), 100, "nothing else, nothing twice");
        // Every one acked; then on the wire: once after the restart, however its row was left
        // (queued, or recorded and sent before the kill), and never again once acked.
        until("every message acked", async || {
            let v: Value = http
                .get(format!("{api}/messages?limit=200"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let rows = v["data"]["messages"].as_array()?;
            ids.iter()
                .all(|id| {
                    rows.iter().any(|m| {
                        m["messageId"]
                            .as_str()
                            .is_some_and(|m| m.ends_with(id.as_str()))
                            && matches!(m["status"].as_str(), Some("server_ack" | "delivered"))
                    })
                })
                .then_some(())
        })
        .await;
        let got: Vec<Value> = http
            .get(format!("{control}/phones/{bob}/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (i, id) in ids.iter().enumerate() {
            let s = stanzas(id.clone()).await;
            let sent = s["originals"].as_u64().unwrap();
            assert!(
                (1..=before[i] + 1).contains(&sent),
                "message {i}: {sent} transmissions, {} before the kill: {s}",
                before[i]
            );
            assert_eq!(
                (s["refused"].as_u64(), s["held"].as_u64()),
                (Some(0), Some(0)),
                "{s}"
            );
            let at_bob = got.iter().find(|x| x["id"] == json!(id)).unwrap();
            assert!(
                at_bob["transmissions"].as_u64() <= Some(before[i] + 1),
                "{at_bob}"
            );
        }
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}

/// A webhook receiver in this process: keeps each body, answers slowly (so deliveries are in
/// flight when the service dies).
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    g.lock().unwrap().push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_survive_a_kill_9_and_arrive_in_order() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let http = reqwest::Client::new();
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let control = info["control_url"].as_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let api = format!(
            "{}/api/whatsapp/sub/agent",
            listening["listening"].as_str().unwrap()
        );
        let token = String::from_utf8(
            std::process::Command::new(BIN)
                .args(["token", "--role", "admin", "--subaccounts", "*"])
                .env("WA_GATEWAY_JWT_SECRET", SECRET)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        let (me, bob) = ("15554000001", "15554000002");
        let send = |method: reqwest::Method, url: String, body: Value| {
            let (http, token) = (http.clone(), token.clone());
            async move {
                let r = http
                    .request(method, url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let (hook, got) = receiver().await;
        let (code, v) = send(
            reqwest::Method::PUT,
            format!("{api}/webhook"),
            json!({ "url": hook, "secret": "kill-9-webhook-secret", "events": ["message.received"] }),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = send(reqwest::Method::POST, format!("{api}/connect"), json!({})).await;
        assert_eq!(code, 200, "{v}");
        let qr = v["data"]["qrCode"].as_str().unwrap().to_owned();
        let (code, _) = send(
            reqwest::Method::POST,
            format!("{control}/phones/{me}/scan"),
            json!({ "qr": qr }),
        )
        .await;
        assert_eq!(code, 200);
        until("connected", async || {
            let v: Value = http
                .get(format!("{api}/status"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["data"]["isConnected"] == json!(true)).then_some(())
        })
        .await;

        // Bob can reach our device once its prekeys are on the server: probe until a text of
        // his is at the receiver.
        let mut probe = 0;
        until("bob reaches us", async || {
            probe += 1;
            let text = format!("probe {probe}");
            send(
                reqwest::Method::POST,
                format!("{control}/phones/{bob}/send"),
                json!({ "to": me, "text": text }),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            got.lock()
                .unwrap()
                .iter()
                .any(|e| e["data"]["message"] == json!(text))
                .then_some(())
        })
        .await;
        let probes = got.lock().unwrap().len();

        // Bob writes 40 texts; the service dies while their events are being delivered.
        let texts: Vec<String> = (0..40).map(|i| format!("hook {i}")).collect();
        for t in &texts {
            let (code, v) = send(
                reqwest::Method::POST,
                format!("{control}/phones/{bob}/send"),
                json!({ "to": me, "text": t }),
            )
            .await;
            assert_eq!(code, 200, "{v}");
        }
        until("some events delivered", async || {
            (got.lock().unwrap().len() >= probes + 3).then_some(())
        })
        .await;
        server.kill().await.unwrap();
        let before = got.lock().unwrap().len() - probes;

        let (mut server, _) = start(&mut serve(dir.path(), &info), "listening").await;
        let events = until("an event for every text", async || {
            let g = got.lock().unwrap().clone();
            texts
                .iter()
                .all(|t| g.iter().any(|e| e["data"]["message"] == json!(t)))
                .then_some(g)
        })
        .await;
        assert!(before < texts.len(), "the kill came before the end ({before})");
        // In order (first arrivals), and a repeat is the same event (same id).
        let mut firsts: Vec<&str> = Vec::new();
        for e in &events {
            let text = e["data"]["message"].as_str().unwrap();
            if text.starts_with("hook ") && !firsts.contains(&text) {
                firsts.push(text);
            }
        }
        assert_eq!(firsts, texts.iter().map(String::as_str).collect::<Vec<_>>());
        for t in &texts {
            let ids: std::collections::HashSet<&str> = events
                .iter()
                .filter(|e| e["data"]["message"] == json!(t))
                .map(|e| e["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), 1, "{t}: one event, maybe delivered twice");
        }
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}

/// The media store after a restart: no staging file is left (a killed write is cleared at
/// start), and the kept blobs are exactly `want`, each named by a history row.
async fn media_store_is_clean(apis: &Apis, dir: &std::path::Path, want: &[&str], named_by: &str) {
    until("staging cleared", async || {
        staging(dir).is_empty().then_some(())
    })
    .await;
    assert_eq!(blob_names(dir), want, "no orphan blob, no other copy");
    let row = apis.message(named_by).await.expect("its history row");
    for w in want {
        assert_eq!(row["media"]["sha256"], json!(w), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_killed_mid_upload_is_sent_once_after_the_restart() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = Apis::new(&listening, &info);
        let (me, bob) = ("15553100001", "15553100002");
        apis.devices(bob, 1).await;
        apis.link(me).await;
        // A text acked first: bob's keys are known and the session is up.
        until("a first send acked", async || {
            let (_, v) = apis
                .post(
                    format!("{}/send", apis.api),
                    json!({ "to": bob, "message": "first" }),
                )
                .await;
            (v["data"]["status"] == json!("server_ack")).then_some(())
        })
        .await;

        // The CDN reads uploads slowly: 4 MiB at 256 KiB/s is still uploading when it dies.
        apis.slow_cdn(Some(256 * 1024)).await;
        let doc = noise(4 << 20, 7);
        let sha = sha_hex(&doc);
        let form = reqwest::multipart::Form::new()
            .text("to", bob)
            .text("type", "document")
            .text("wait", "false")
            .part(
                "file",
                reqwest::multipart::Part::bytes(doc)
                    .file_name("big.bin")
                    .mime_str("application/octet-stream")
                    .unwrap(),
            );
        let r = apis
            .http
            .post(format!("{}/send", apis.api))
            .bearer_auth(&apis.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"]["status"], json!("pending"), "{v}");
        let id = v["data"]["messageId"]
            .as_str()
            .unwrap()
            .rsplit('_')
            .next()
            .unwrap()
            .to_owned();
        until("the upload under way", async || {
            apis.transfers("upload")
                .await
                .iter()
                .any(|b| *b > 0)
                .then_some(())
        })
        .await;
        server.kill().await.unwrap();
        assert_eq!(
            blob_names(dir.path()),
            [sha.as_str()],
            "kept before the upload"
        );
        // The CDN kept nothing of the cut upload; the link is fast again.
        apis.slow_cdn(None).await;
        until("the cut upload dropped", async || {
            apis.transfers("upload").await.is_empty().then_some(())
        })
        .await;
        let stored = message_media(
            apis.get(format!("{}/cdn/media", apis.control))
                .await
                .unwrap(),
        );
        assert!(stored.is_empty(), "a cut upload is no file: {stored:?}");

        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = apis.at(&listening);
        let got = until("the document at bob's, checked", async || {
            let m = apis.phone_messages(bob).await;
            m.iter()
                .any(|x| x["id"] == json!(id) && x["media"]["verified"] == json!(true))
                .then_some(m)
        })
        .await;
        let copies: Vec<&Value> = got.iter().filter(|x| x["id"] == json!(id)).collect();
        assert_eq!(copies.len(), 1, "once: {copies:?}");
        assert_eq!(copies[0]["media"]["sha256"], json!(sha));
        assert_eq!(copies[0]["media"]["size"], json!(4 << 20));
        assert_eq!(copies[0]["media"]["fileName"], json!("big.bin"));
        let stored = message_media(
            apis.get(format!("{}/cdn/media", apis.control))
                .await
                .unwrap(),
        );
        assert_eq!(stored.len(), 1, "uploaded once, whole: {stored:?}");
        until("acked", async || {
            let m = apis.message(&id).await?;
            matches!(m["status"].as_str(), Some("server_ack" | "delivered")).then_some(())
        })
        .await;
        media_store_is_clean(&apis, dir.path(), &[sha.as_str()], &id).await;
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_killed_mid_download_is_kept_whole_after_the_restart() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = Apis::new(&listening, &info);
        let (me, bob) = ("15553200001", "15553200002");
        // Bob's phone alone: no companion of his fetches the file too.
        apis.devices(bob, 1).await;
        apis.link(me).await;
        apis.reachable(bob, me).await;

        // The CDN serves slowly: 8 MB at 256 KiB/s is still arriving when the service dies.
        apis.slow_cdn(Some(256 * 1024)).await;
        let (code, sent) = apis
            .post(
                format!("{}/phones/{bob}/send", apis.control),
                json!({ "to": me, "media": {
                    "kind": "document",
                    "generate": { "bytes": 8_000_000, "seed": 3 },
                    "fileName": "big.pdf",
                }}),
            )
            .await;
        assert_eq!(code, 200, "{sent}");
        let id = sent["id"].as_str().unwrap().to_owned();
        let sha = sent["sha256"].as_str().unwrap().to_owned();
        // Part of the file is in staging when the kill comes.
        until("the download under way", async || {
            let under_way = apis.transfers("download").await.iter().any(|b| *b > 0);
            (under_way && staging(dir.path()).iter().any(|(_, len)| *len > 0)).then_some(())
        })
        .await;
        server.kill().await.unwrap();
        let left = staging(dir.path());
        assert!(
            left.iter().any(|(_, len)| (1..8_000_000).contains(len)),
            "a half file is left: {left:?}"
        );
        assert!(blob_names(dir.path()).is_empty(), "nothing kept unchecked");
        apis.slow_cdn(None).await;

        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = apis.at(&listening);
        let row = until("the file settled", async || {
            let m = apis.message(&id).await?;
            matches!(m["media"]["state"].as_str(), Some("stored" | "failed")).then_some(m)
        })
        .await;
        assert_eq!(row["media"]["state"], json!("stored"), "{row}");
        let r = apis
            .http
            .get(format!("{}/messages/{id}/media", apis.api))
            .bearer_auth(&apis.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 8_000_000);
        assert_eq!(sha_hex(&body), sha);
        media_store_is_clean(&apis, dir.path(), &[sha.as_str()], &id).await;
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}

/// The CDN's files that are messages' media: the app-state snapshots (`md-app-state`) and
/// history chunks (`md-msg-hist`) simulated phones upload at linking are left out.
fn message_media(listed: Value) -> Vec<Value> {
    listed
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| !m["mms_type"].as_str().unwrap_or("").starts_with("md-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Per collection: (version, LTHash) as stored, and the LTHash its stored records' value MACs
/// add up to; read straight from the data directory's SQLite file (a killed process's WAL
/// holds exactly its committed transactions).
async fn stored_app_state(dir: &std::path::Path) -> Vec<(String, u64, Vec<u8>, Vec<u8>)> {
    use sqlx::Row;
    let url = format!("sqlite://{}", dir.join("wa-gateway.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let colls = sqlx::query("SELECT name, version, hash FROM appstate_collections ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut out = Vec::new();
    for c in colls {
        let name: String = c.get("name");
        let macs = sqlx::query("SELECT value_mac FROM appstate_records WHERE collection = ?")
            .bind(&name)
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut sum = wa_gateway::appstate::LtHash::default();
        for m in macs {
            sum.add(&m.get::<Vec<u8>, _>("value_mac"));
        }
        let version: i64 = c.get("version");
        out.push((name, version as u64, c.get("hash"), sum.0.to_vec()));
    }
    pool.close().await;
    out
}

/// kill -9 while the phone's app-state patches pour in: whatever the kill interrupted, each
/// collection's stored version, LTHash and records are from one committed patch (the hash is
/// the sum of the records kept), and after the restart the account catches up to the server's
/// versions and the phone's last archive flags, still whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_state_killed_mid_sync_is_whole_and_catches_up_after_the_restart() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = Apis::new(&listening, &info);
        let me = "15556000001";
        let friends = ["15556000002", "15556000003", "15556000004"];
        for f in friends {
            let (code, _) = apis
                .post(
                    format!("{}/phones/{f}/echo", apis.control),
                    json!({ "on": false }),
                )
                .await;
            assert_eq!(code, 200);
        }
        apis.link(me).await;
        for f in friends {
            apis.reachable(f, me).await;
        }
        // The phone toggles archive (regular_low) and mute (regular_high) on its chats, from
        // a task of its own that goes on while the service dies.
        let phone = apis.clone();
        let actions = tokio::spawn(async move {
            let mut last = std::collections::HashMap::new();
            for i in 0..120usize {
                let f = friends[i % friends.len()];
                let action = match (i / friends.len()) % 4 {
                    0 => "archive",
                    1 => "mute",
                    2 => "unarchive",
                    _ => "unmute",
                };
                let (code, v) = phone
                    .post(
                        format!("{}/phones/{me}/appstate", phone.control),
                        json!({ "action": action, "chat": f }),
                    )
                    .await;
                assert_eq!(code, 200, "{v}");
                if action.ends_with("archive") {
                    last.insert(f, action == "archive");
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            last
        });
        // Some of it applied, then the kill.
        until("a first archived chat", async || {
            let v = apis.get(format!("{}/chats?limit=50", apis.api)).await?;
            v["data"]["chats"]
                .as_array()?
                .iter()
                .any(|c| c["archived"] == json!(true))
                .then_some(())
        })
        .await;
        server.kill().await.unwrap();
        let at_kill = stored_app_state(dir.path()).await;
        assert!(!at_kill.is_empty());
        for (name, version, hash, sum) in &at_kill {
            assert_eq!(
                hash, sum,
                "{name} at v{version}: the hash is its records' sum"
            );
        }
        let archived = actions.await.unwrap();

        // The restart catches up: every collection at the server's version, still whole.
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = apis.at(&listening);
        apis.connected().await;
        let server_version = async |name: &str| {
            apis.get(format!("{}/phones/{me}/appstate/{name}", apis.control))
                .await
                .and_then(|v| v["version"].as_u64())
        };
        let mut want = Vec::new();
        for (name, _, _, _) in &at_kill {
            want.push((name.clone(), server_version(name).await.unwrap()));
        }
        let before: std::collections::HashMap<_, _> =
            at_kill.iter().map(|(n, v, _, _)| (n.clone(), *v)).collect();
        assert!(
            want.iter().any(|(n, v)| before[n] < *v),
            "the kill came before the phone's last patch: {before:?} vs {want:?}"
        );
        until("every collection at the server's version", async || {
            let now = stored_app_state(dir.path()).await;
            want.iter()
                .all(|(n, v)| now.iter().any(|(m, w, _, _)| m == n && w == v))
                .then_some(())
        })
        .await;
        for (name, version, hash, sum) in stored_app_state(dir.path()).await {
            assert_eq!(hash, sum, "{name} at v{version} after the restart");
        }
        let v = apis
            .get(format!("{}/chats?limit=50", apis.api))
            .await
            .unwrap();
        let chats = v["data"]["chats"].as_array().unwrap();
        for (f, is_archived) in archived {
            let c = chats
                .iter()
                .find(|c| c["pn"] == json!(format!("{f}@c.us")))
                .unwrap_or_else(|| panic!("{f} in {chats:?}"));
            assert_eq!(c["archived"], json!(is_archived), "{f}: {c}");
        }
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}

/// The history rows of the data directory `dir`'s database and its kept history
/// notifications (message id, receipt due), read straight from the SQLite file.
async fn stored_history(dir: &std::path::Path) -> (i64, i64, Vec<(String, bool)>) {
    use sqlx::Row;
    let url = format!("sqlite://{}", dir.join("wa-gateway.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE history = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let distinct: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT id) FROM messages WHERE history = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let kept = sqlx::query("SELECT msg_id, receipt_due FROM pending_history ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("msg_id"),
                r.get::<bool, _>("receipt_due"),
            )
        })
        .collect();
    pool.close().await;
    (rows, distinct, kept)
}

/// What the simulator says of phone `me`'s one companion: the ids of the history chunks it
/// was sent (the inline bootstrap aside), and the receipts it sent back (id, type).
async fn history_seen(apis: &Apis, me: &str) -> Option<(Vec<String>, Vec<(String, String)>)> {
    let v = apis
        .get(format!("{}/phones/{me}/history", apis.control))
        .await?;
    let c = v.as_array()?.first()?.clone();
    let chunks = c["sent"]
        .as_array()?
        .iter()
        .filter(|s| s["syncType"] != json!(0))
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let receipts = c["receipts"]
        .as_array()?
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["type"].as_str()?.to_owned())))
        .collect();
    Some((chunks, receipts))
}

/// kill -9 while the phone's history pours in (four chunks of 5,000 messages over a slow
/// CDN): a chunk whose message was already acknowledged to the server (which never delivers
/// it again) but not yet stored is kept in the store at the kill, and after the restart every
/// message of every chunk is stored once and each chunk's `hist_sync` receipt reaches the
/// phone, naming its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_chunk_killed_before_it_is_stored_is_stored_and_receipted_after_the_restart() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = Apis::new(&listening, &info);
        let me = "15556100001";
        const TOTAL: i64 = 20_000;
        let (code, v) = apis
            .post(
                format!("{}/phones/{me}/history", apis.control),
                json!({ "chats": 20, "messages": 1000 }),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        // Each chunk's download takes a while: the kill lands between chunks.
        apis.slow_cdn(Some(40_000)).await;
        apis.link(me).await;
        let delivered_not_stored = |seen: &(Vec<String>, Vec<(String, String)>)| -> Vec<String> {
            let (chunks, receipts) = seen;
            let has = |id: &str, kind: &str| receipts.iter().any(|(i, k)| i == id && k == kind);
            chunks
                .iter()
                .filter(|id| has(id, "peer_msg") && !has(id, "hist_sync"))
                .cloned()
                .collect()
        };
        // The window: some rows stored, not all, and a chunk acknowledged as delivered whose
        // hist_sync receipt has not gone out.
        until_within(
            "a chunk acknowledged but not stored",
            Duration::from_secs(150),
            async || {
                let seen = history_seen(&apis, me).await?;
                if seen.0.len() < 4 {
                    return None;
                }
                let (rows, _, _) = stored_history(dir.path()).await;
                (rows > 0 && rows < TOTAL && !delivered_not_stored(&seen).is_empty()).then_some(())
            },
        )
        .await;
        server.kill().await.unwrap();
        let seen = history_seen(&apis, me).await.unwrap();
        let (chunks, _) = seen.clone();
        assert_eq!(chunks.len(), 4, "{seen:?}");
        let (rows, _, kept) = stored_history(dir.path()).await;
        assert!(
            rows < TOTAL,
            "the kill came before the last chunk was stored"
        );
        // Every chunk acknowledged but not receipted is kept, and one of them was not stored
        // at all yet: without the queue in the store it would be lost for good.
        let window = delivered_not_stored(&seen);
        assert!(!window.is_empty(), "{seen:?}");
        for id in &window {
            assert!(kept.iter().any(|(k, _)| k == id), "{id} kept: {kept:?}");
        }
        assert!(
            kept.iter().any(|(k, due)| window.contains(k) && !due),
            "an acknowledged chunk was not wholly stored at the kill: {kept:?}"
        );

        // The restart resumes the kept chunks and sends every receipt.
        apis.slow_cdn(None).await;
        let (mut server, listening) = start(&mut serve(dir.path(), &info), "listening").await;
        let apis = apis.at(&listening);
        apis.connected().await;
        until_within(
            "every chunk stored and receipted",
            Duration::from_secs(150),
            async || {
                let (_, receipts) = history_seen(&apis, me).await?;
                chunks
                    .iter()
                    .all(|id| receipts.iter().any(|(i, k)| i == id && k == "hist_sync"))
                    .then_some(())
            },
        )
        .await;
        until("the kept notifications forgotten", async || {
            let (_, _, kept) = stored_history(dir.path()).await;
            kept.is_empty().then_some(())
        })
        .await;
        let (rows, distinct, _) = stored_history(dir.path()).await;
        assert_eq!(rows, TOTAL, "every message of every chunk, once");
        assert_eq!(distinct, TOTAL);
        let v = apis
            .get(format!("{}/chats?limit=50", apis.api))
            .await
            .unwrap();
        assert_eq!(v["data"]["count"], json!(20), "{v}");
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}
