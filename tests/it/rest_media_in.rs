//! Media a customer sends, as the service gives it to an agent: the file is downloaded by
//! itself into the content-addressed blob store, history and the `message.received` webhook
//! carry its `media` entry, and the webhook's `downloadUrl` (a signed link on
//! `WA_GATEWAY_PUBLIC_URL`) serves the exact bytes to a receiver that holds no JWT. A file over
//! the auto-download cap is skipped, then fetched when an agent asks for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use wa_gateway::api::auth::Role;
use wa_gateway::service::media::MediaSettings;
use wa_gateway::service::{Pacing, ServiceOptions, WebhookSettings};
use wa_gateway::sim::phone_media::{MediaData, MediaKind, MediaSend};
use wa_gateway::sim::{CdnFault, Simulator};

use crate::messaging::{control_api, eventually};
use crate::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(150);
/// The base the signed links are made on (a reverse proxy's name for the service).
const PUBLIC: &str = "https://files.example.test/gw";
/// Inbound files up to this size are fetched by themselves.
const AUTO_MAX: u64 = 100_000;

/// A webhook receiver that keeps every body it gets.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
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
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn sha_hex(b: &[u8]) -> String {
    wa_gateway::util::hex::encode(&sha2::Sha256::digest(b))
}

/// The `message.received` event of WhatsApp id `id`, once it came.
async fn received(got: &Mutex<Vec<Value>>, id: &str) -> Value {
    eventually("the message.received webhook", async || {
        got.lock()
            .unwrap()
            .iter()
            .find(|e| {
                e["event"] == json!("message.received")
                    && e["data"]["messageId"]
                        .as_str()
                        .is_some_and(|m| m.ends_with(&format!("_{id}")))
            })
            .cloned()
    })
    .await
}

/// The history row of WhatsApp id `id`.
async fn row(http: &reqwest::Client, base: &str, admin: &str, id: &str) -> Option<Value> {
    let (code, v) = call(
        http,
        reqwest::Method::GET,
        &format!("{base}/messages?limit=50"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["data"]["messages"]
        .as_array()?
        .iter()
        .find(|m| {
            m["messageId"]
                .as_str()
                .is_some_and(|x| x.ends_with(&format!("_{id}")))
        })
        .cloned()
}

/// `from` deletes its message `id` to `to` for everyone (control API); returns once our
/// history shows it revoked.
async fn revoke(
    http: &reqwest::Client,
    control: &str,
    base: &str,
    admin: &str,
    (from, to): (&str, &str),
    id: &str,
) {
    let r = http
        .post(format!("{control}/phones/{from}/send"))
        .json(&json!({ "to": to, "revoke": { "id": id } }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually("the revoke", async || {
        row(http, base, admin, id)
            .await
            .filter(|r| r["revoked"] == json!(true))
    })
    .await;
}

/// The service as these tests run it: media kept under `blobs`, links on [`PUBLIC`].
fn options(blobs: &std::path::Path) -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        },
        webhooks: WebhookSettings {
            // The receiver is on loopback.
            allow_private: true,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..Default::default()
        },
        media: MediaSettings {
            blob_dir: Some(blobs.to_path_buf()),
            auto_max: AUTO_MAX,
            public_url: Some(PUBLIC.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_customers_files_are_fetched_kept_announced_and_served_by_signed_link() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let opts = options(&blobs);
        let server = Server::start_opts(&sim, &db, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15554000001", "15554000002");
        let (hook, got) = receiver().await;
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({ "url": hook, "secret": "media-in-secret-0123456789" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        link(&sim, &http, &admin, &base, me).await;
        sim.set_devices(bob, 1).unwrap();

        // A photo: fetched by itself, announced with its entry and a signed link.
        let (photo, photo_mime) = wa_gateway::sim::samples::sample("photo.jpg").unwrap();
        let mut send = MediaSend::new(MediaKind::Image, MediaData::Bytes(photo.clone()));
        send.caption = Some("the damage".into());
        send.width = Some(320);
        send.height = Some(240);
        let (id, sent) = sim.phone_send_media(bob, me, send).await.unwrap();
        assert_eq!(sent.sha256, sha_hex(&photo));
        let event = received(&got, &id).await;
        let data = &event["data"];
        assert_eq!(data["hasMedia"], json!(true), "{event}");
        assert_eq!(data["type"], json!("image"), "{event}");
        let media = &data["media"];
        assert_eq!(media["mimetype"], json!(photo_mime), "{event}");
        assert_eq!(media["size"], json!(photo.len()), "{event}");
        assert_eq!(media["sha256"], json!(sent.sha256), "{event}");
        assert_eq!(
            (&media["width"], &media["height"]),
            (&json!(320), &json!(240))
        );
        let link_url = media["downloadUrl"].as_str().expect("a download link");
        let path = link_url
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("{link_url} is made on the public URL"));
        assert!(path.starts_with("/api/media/"), "{link_url}");

        // Kept under its SHA-256 once the downloader fetched it.
        let stored = eventually("the photo to be stored", async || {
            row(&http, &base, &admin, &id)
                .await
                .filter(|r| r["media"]["state"] == json!("stored"))
        })
        .await;
        assert_eq!(stored["media"]["sha256"], json!(sent.sha256));
        assert_eq!(
            std::fs::read(blobs.join(&sent.sha256[..2]).join(&sent.sha256)).unwrap(),
            photo,
            "content-addressed in the blob store"
        );

        // The signed link serves it to a receiver without a JWT; a changed token serves nothing.
        let resp = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], photo_mime);
        assert_eq!(resp.bytes().await.unwrap().to_vec(), photo);
        // A changed signature: one character in the middle of the MAC (still valid base64).
        let (signed, mac) = path.rsplit_once('.').unwrap();
        let mut mac: Vec<char> = mac.chars().collect();
        let mid = mac.len() / 2;
        mac[mid] = if mac[mid] == 'A' { 'B' } else { 'A' };
        let forged = format!("{signed}.{}", mac.iter().collect::<String>());
        let resp = http
            .get(format!("{}{forged}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);

        // A document over the auto-download cap: announced, skipped, fetched when asked for.
        let len = AUTO_MAX + 50_000;
        let mut doc = MediaSend::new(
            MediaKind::Document,
            MediaData::Generate {
                bytes: len,
                seed: 5,
            },
        );
        doc.file_name = Some("statement.pdf".into());
        doc.mimetype = Some("application/pdf".into());
        let (doc_id, doc_sent) = sim.phone_send_media(bob, me, doc).await.unwrap();
        let event = received(&got, &doc_id).await;
        assert_eq!(event["data"]["media"]["fileName"], json!("statement.pdf"));
        assert_eq!(event["data"]["media"]["size"], json!(len));
        let skipped = eventually("the document to be skipped", async || {
            row(&http, &base, &admin, &doc_id)
                .await
                .filter(|r| r["media"]["state"] == json!("skipped"))
        })
        .await;
        assert_eq!(skipped["media"]["sha256"], json!(doc_sent.sha256));
        assert!(
            !blobs
                .join(&doc_sent.sha256[..2])
                .join(&doc_sent.sha256)
                .exists(),
            "not fetched by itself"
        );
        let resp = http
            .get(format!("{base}/messages/{doc_id}/media"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/pdf");
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            (body.len() as u64, sha_hex(&body)),
            (len, doc_sent.sha256.clone())
        );
        let now = row(&http, &base, &admin, &doc_id).await.unwrap();
        assert_eq!(now["media"]["state"], json!("stored"), "{now}");

        // Skipped files the CDN then corrupts or expires, asked for afterwards: the corrupt one
        // is a media_error and leaves no file; the expired one comes back through the phone's
        // media retry.
        let skipped_doc = |seed: u64| {
            let mut d = MediaSend::new(
                MediaKind::Document,
                MediaData::Generate { bytes: len, seed },
            );
            d.mimetype = Some("application/pdf".into());
            d
        };
        let (bad_id, bad) = sim.phone_send_media(bob, me, skipped_doc(6)).await.unwrap();
        let (old_id, old) = sim.phone_send_media(bob, me, skipped_doc(7)).await.unwrap();
        for id in [&bad_id, &old_id] {
            eventually("the documents to be skipped", async || {
                row(&http, &base, &admin, id)
                    .await
                    .filter(|r| r["media"]["state"] == json!("skipped"))
            })
            .await;
        }
        assert_eq!(
            sim.cdn_fault(&CdnFault::Corrupt(bad.direct_path.clone())),
            1
        );
        assert_eq!(sim.cdn_fault(&CdnFault::Expire(old.direct_path.clone())), 1);
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages/{bad_id}/media"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (409, Some("media_error")),
            "{v}"
        );
        assert!(!blobs.join(&bad.sha256[..2]).join(&bad.sha256).exists());
        assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
        let resp = http
            .get(format!("{base}/messages/{old_id}/media"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        assert_eq!(sha_hex(&body), old.sha256, "the re-uploaded copy");

        // The customer deletes the photo for everyone: its file is served no more, by the API
        // or by the link already handed out, and the sweep takes its blob.
        let control = control_api(&sim).await;
        revoke(&http, &control, &base, &admin, (bob, me), &id).await;
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages/{id}/media"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (409, Some("media_error")),
            "{v}"
        );
        let resp = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        // A link gives stored files only.
        assert_eq!(resp.status(), 404);
        let swept = server.service.sweep_blobs(Duration::ZERO).await.unwrap();
        assert!(swept >= 1, "swept {swept}");
        assert!(!blobs.join(&sent.sha256[..2]).join(&sent.sha256).exists());
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_file_revoked_while_it_downloads_is_not_kept() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, options(&blobs)).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15554000011", "15554000012");
        link(&sim, &http, &admin, &base, me).await;
        sim.set_devices(bob, 1).unwrap();
        let control = control_api(&sim).await;

        // A slow link: the automatic download is still under way when the revoke comes.
        sim.cdn_fault(&CdnFault::SlowTransfers(Some(20_000)));
        let doc = MediaSend::new(
            MediaKind::Document,
            MediaData::Generate {
                bytes: 60_000,
                seed: 9,
            },
        );
        let (id, sent) = sim.phone_send_media(bob, me, doc).await.unwrap();
        eventually("the download to start", async || {
            sim.cdn_transfers()
                .iter()
                .any(|t| t.direction == "download" && t.bytes > 0)
                .then_some(())
        })
        .await;
        revoke(&http, &control, &base, &admin, (bob, me), &id).await;
        // The download then ends well; the file stays gone.
        sim.cdn_fault(&CdnFault::SlowTransfers(None));
        eventually("the download to end", async || {
            sim.cdn_transfers().is_empty().then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = row(&http, &base, &admin, &id).await.unwrap();
        assert_eq!(now["media"]["state"], json!("failed"), "{now}");
        let (code, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages/{id}/media"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (409, Some("media_error")),
            "{v}"
        );
        server.service.sweep_blobs(Duration::ZERO).await.unwrap();
        assert!(!blobs.join(&sent.sha256[..2]).join(&sent.sha256).exists());
    })
    .await
    .expect("in time");
}
