//! Media over REST against the simulator: a file sent by multipart, by base64 and by URL goes
//! out as a media message (uploaded to the CDN once, even when the request is retried with its
//! Idempotency-Key), and `GET …/messages/:id/media` gives back the exact bytes with its ETag
//! and ranges; bad files and URLs are refused with their codes.

use std::time::Duration;

use serde_json::{Value, json};
use wa_gateway::api::auth::Role;
use wa_gateway::service::ServiceOptions;
use wa_gateway::service::WebhookSettings;
use wa_gateway::service::media::MediaSettings;
use wa_gateway::sim::Simulator;

use crate::messaging::eventually;
use crate::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(150);

/// The REST tests' options with a media store in `blobs`; `url_private` lets `media.url`
/// reach loopback (where these tests serve files).
fn media_options(blobs: &std::path::Path, url_private: bool) -> ServiceOptions {
    ServiceOptions {
        media: MediaSettings {
            blob_dir: Some(blobs.to_path_buf()),
            url_allow_private: url_private,
            ..Default::default()
        },
        ..crate::webhooks::public_only(WebhookSettings::default())
    }
}

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    wa_gateway::util::hex::encode(&sha2::Sha256::digest(b))
}

async fn get_media(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = http.get(url).bearer_auth(token);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn b64(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

/// What user `number`'s phone saw of media message `id`, once it checked the file.
async fn phone_media(sim: &Simulator, number: &str, id: &str) -> wa_gateway::sim::inbox::MediaSeen {
    eventually("the phone to check the file", async || {
        sim.phone_messages(number)
            .into_iter()
            .find(|r| r.id == id && r.media.is_some())
            .and_then(|r| r.media)
    })
    .await
}

fn bare(id: &Value) -> String {
    id.as_str().unwrap().rsplit('_').next().unwrap().to_owned()
}

#[tokio::test]
async fn files_go_out_once_and_come_back_exact() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server =
            Server::start_opts(&sim, &db, media_options(&dir.path().join("blobs"), true)).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15552000001", "15552000002");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;

        // A document by multipart, sent with an Idempotency-Key, then the same request again.
        let doc = file(300_001, 7);
        let form = || {
            reqwest::multipart::Form::new()
                .text("to", bob)
                .text("message", "the report")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(doc.clone())
                        .file_name("report.pdf")
                        .mime_str("application/pdf")
                        .unwrap(),
                )
        };
        let mut first = None;
        for _ in 0..2 {
            let resp = http
                .post(format!("{base}/send"))
                .bearer_auth(&admin)
                .header("idempotency-key", "doc-1")
                .multipart(form())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["data"]["status"], json!("server_ack"), "{v}");
            assert_eq!(v["data"]["message"], json!("the report"));
            match &first {
                None => first = Some(v["data"]["messageId"].clone()),
                Some(id) => assert_eq!(&v["data"]["messageId"], id, "the retry gets the first send"),
            }
        }
        let id = bare(first.as_ref().unwrap());
        assert_eq!(super::sim_cdn::message_media(&sim).len(), 1, "uploaded to WhatsApp once");
        let logged = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == id)
            .count();
        assert_eq!(logged, 1, "sent once");

        // Its file, whole, ranged and unchanged.
        let media_url = format!("{base}/messages/{id}/media");
        let (status, h, body) = get_media(&http, &media_url, &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(body, doc);
        assert_eq!(h["content-type"], "application/pdf");
        assert_eq!(h["content-length"], doc.len().to_string().as_str());
        assert_eq!(
            h["content-disposition"],
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        // The id as the API gave it names the same file; the same id in another chat, none.
        let serialized = first.as_ref().unwrap().as_str().unwrap();
        let (status, _, body) = get_media(
            &http,
            &format!("{base}/messages/{serialized}/media"),
            &admin,
            None,
        )
        .await;
        assert_eq!((status, body == doc), (200, true), "{serialized}");
        let elsewhere = format!("true_19999999999@c.us_{id}");
        let (status, _, _) = get_media(
            &http,
            &format!("{base}/messages/{elsewhere}/media"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 404);
        let etag = h["etag"].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", sha256_hex(&doc)));
        assert!(h["content-disposition"].to_str().unwrap().contains("report.pdf"));
        let (status, h, body) = get_media(&http, &media_url, &admin, Some("bytes=100-199")).await;
        assert_eq!(status, 206);
        assert_eq!(body, doc[100..200]);
        assert_eq!(
            h["content-range"],
            format!("bytes 100-199/{}", doc.len()).as_str()
        );
        let (status, _, body) = get_media(&http, &media_url, &admin, Some("bytes=-10")).await;
        assert_eq!((status, body.as_slice()), (206, &doc[doc.len() - 10..]));
        let (status, _, _) = get_media(&http, &media_url, &admin, Some("bytes=999999999-")).await;
        assert_eq!(status, 416);
        let resp = http
            .get(&media_url)
            .bearer_auth(&admin)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 304);
        // Another tenant's token sees nothing.
        let other = token(Role::Member, &["sub2"], 3600);
        let (status, _, _) = get_media(&http, &media_url, &other, None).await;
        assert_eq!(status, 403);

        // An image as base64 in JSON, its mimetype left to the bytes.
        let img = wa_gateway::sim::samples::photo_png(64, 48);
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({
                "to": bob,
                "media": {
                    "base64": b64(&img),
                },
            })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let img_id = bare(&v["data"]["messageId"]);
        let (status, h, body) =
            get_media(&http, &format!("{base}/messages/{img_id}/media"), &admin, None).await;
        assert_eq!((status, body == img), (200, true));
        assert_eq!(h["content-type"], "image/png");
        let kinds: Vec<(String, Vec<(String, String)>)> = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == img_id)
            .map(|l| (l.id, l.encs))
            .collect();
        assert_eq!(kinds.len(), 1);
        // The phone sees an image, with the dimensions and a JPEG thumbnail made from the bytes.
        let seen = phone_media(&sim, bob, &img_id).await;
        assert_eq!(seen.kind, "image");
        assert_eq!(seen.mediatype.as_deref(), Some("image"));
        assert_eq!(seen.mimetype.as_deref(), Some("image/png"));
        assert!(seen.verified, "{seen:?}");
        assert_eq!((seen.shown.width, seen.shown.height), (Some(64), Some(48)));
        assert_eq!(seen.shown.thumbnail.as_deref(), Some("jpeg"));

        // A voice note from a URL (a loopback file server: private addresses are allowed here).
        let ogg = wa_gateway::sim::samples::voice_ogg(5);
        let served = ogg.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let files = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/voice.ogg",
                axum::routing::get(move || {
                    let b = served.clone();
                    async move { ([("content-type", "audio/ogg; codecs=opus")], b) }
                }),
            )
            .route(
                "/moved",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [("location", "http://169.254.169.254/")],
                    )
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "type": "ptt", "media": { "url": format!("{files}/voice.ogg") } })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let ptt_id = bare(&v["data"]["messageId"]);
        let (status, h, body) =
            get_media(&http, &format!("{base}/messages/{ptt_id}/media"), &admin, None).await;
        assert_eq!((status, body == ogg), (200, true));
        assert_eq!(h["content-type"], "audio/ogg; codecs=opus");
        // A voice note with its length and a waveform read from the Ogg stream.
        let seen = phone_media(&sim, bob, &ptt_id).await;
        assert_eq!((seen.kind.as_str(), seen.verified), ("ptt", true), "{seen:?}");
        assert_eq!(seen.shown.seconds, Some(5));
        let wave = seen.shown.waveform.expect("a waveform");
        assert_eq!(wave.len(), wa_gateway::media::WAVEFORM_LEN);
        assert_eq!(wave.iter().max(), Some(&100));

        // Refusals: a redirect, an empty file, no file and no text, an unknown type, a text
        // message's media, bytes that are not the image they claim, a PNG as a sticker.
        for (body, code, err) in [
            (
                json!({ "to": bob, "media": { "base64": b64(&file(5000, 9)), "mimetype": "image/png" } }),
                415,
                "media_type_not_accepted",
            ),
            (
                json!({ "to": bob, "media": { "base64": b64(b"%PDF-1.7 not a photo"), "mimetype": "image/jpeg" } }),
                415,
                "media_type_not_accepted",
            ),
            (
                json!({ "to": bob, "type": "sticker", "media": { "base64": b64(&img) } }),
                415,
                "media_type_not_accepted",
            ),
            (
                json!({ "to": bob, "media": { "url": format!("{files}/moved") } }),
                400,
                "media_url_not_allowed",
            ),
            (
                json!({ "to": bob, "media": { "base64": "" } }),
                400,
                "media_empty",
            ),
            (
                json!({ "to": bob, "media": { "base64": "AAAA", "url": "http://x/" } }),
                400,
                "invalid_media",
            ),
            (
                json!({ "to": bob, "type": "hologram", "media": { "base64": "AAAA" } }),
                400,
                "invalid_type",
            ),
            (json!({ "to": bob }), 400, "missing_message"),
        ] {
            let (c, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/send"),
                Some(&admin),
                Some(body.clone()),
            )
            .await;
            assert_eq!((c, v["error"]["code"].as_str()), (code, Some(err)), "{body} → {v}");
        }
        let (c, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages/NOSUCHID/media"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!((c, v["error"]["code"].as_str()), (404, Some("media_not_available")));

        // An image over its cap, by multipart: refused, and no file is kept for it.
        let before = super::sim_cdn::message_media(&sim).len();
        let big = reqwest::multipart::Form::new().text("to", bob).part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 17 * 1024 * 1024])
                .mime_str("image/jpeg")
                .unwrap(),
        );
        let resp = http
            .post(format!("{base}/send"))
            .bearer_auth(&admin)
            .multipart(big)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "media_too_large", "{v}");
        assert_eq!(super::sim_cdn::message_media(&sim).len(), before);
        eventually("no staging file left", async || {
            (std::fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count() == 0).then_some(())
        })
        .await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// The part of a signed link after `/api/media/`.
fn link_token(url: &str) -> String {
    url.rsplit("/api/media/").next().unwrap().to_owned()
}

#[tokio::test]
async fn json_sends_links_and_urls_are_checked_before_anything_is_trusted() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let mut opts = media_options(&dir.path().join("blobs"), false);
        // Webhooks may reach loopback here; media URLs still may not: each has its own switch.
        opts.webhooks.allow_private = true;
        opts.media.public_url = Some("http://gw.invalid".into());
        // Arriving files wait until asked for: a link must not be what asks.
        opts.media.auto_download = false;
        let server = Server::start_opts(&sim, &db, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15552000021", "15552000022");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;
        let send = |body: Value| {
            let (http, url, admin) = (&http, format!("{base}/send"), &admin);
            async move { call(http, reqwest::Method::POST, &url, Some(admin), Some(body)).await }
        };

        // A text send is held to the small body limit, whatever else it carries.
        let (c, v) = send(json!({ "to": bob, "message": "hi", "pad": "x".repeat(1 << 20) })).await;
        assert_eq!((c, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");

        // A document as base64 over several decoding steps, with a name no header may carry
        // raw: it comes back exact, named both ways RFC 6266 allows.
        let doc = file(300_000, 3);
        let (c, v) = send(json!({
            "to": bob,
            "media": { "base64": b64(&doc), "mimetype": "application/pdf", "filename": "Résumé \"Q1\".pdf" },
        }))
        .await;
        assert_eq!(c, 200, "{v}");
        let doc_id = bare(&v["data"]["messageId"]);
        let (status, h, body) =
            get_media(&http, &format!("{base}/messages/{doc_id}/media"), &admin, None).await;
        assert_eq!((status, body == doc), (200, true));
        assert_eq!(
            h["content-disposition"],
            "attachment; filename=\"R_sum_ Q1.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22Q1%22.pdf"
        );

        // Bad base64 and a `media` that is no object: 400, saying where.
        let mut padded = b64(&file(100_000, 4)).into_bytes();
        padded[8..12].copy_from_slice(b"AA==");
        for (media, code, at) in [
            (json!({ "base64": "AAAA*AAA" }), "invalid_media", Some("character 4")),
            (
                json!({ "base64": String::from_utf8(padded).unwrap() }),
                "invalid_media",
                Some("character 10"),
            ),
            (json!({ "base64": "QUJD", "thumbnail": "%%" }), "invalid_media", Some("media.thumbnail")),
            (json!(5), "invalid_body", None),
        ] {
            let (c, v) = send(json!({ "to": bob, "media": media })).await;
            assert_eq!((c, v["error"]["code"].as_str()), (400, Some(code)), "{media} → {v}");
            if let Some(at) = at {
                assert!(v["message"].as_str().unwrap().contains(at), "{v}");
            }
        }

        // Loopback URLs, by address or by name, are refused by default.
        for url in ["http://127.0.0.1:9/a.jpg", "http://localhost:9/a.jpg", "http://[::1]:9/a.jpg"] {
            let (c, v) = send(json!({ "to": bob, "media": { "url": url } })).await;
            assert_eq!(
                (c, v["error"]["code"].as_str()),
                (400, Some("media_url_not_allowed")),
                "{url} → {v}"
            );
            assert!(v["message"].as_str().unwrap().contains("may not reach"), "{url} → {v}");
        }

        // Signed links: a genuine one gives the file, cached no longer than it holds.
        let now = (wa_gateway::util::clock::now_ms() / 1000) as i64;
        let svc = &server.service;
        let good = svc
            .media_link_until("sub1", "agent1", &doc_id, now + 3600)
            .await
            .unwrap();
        let token_of = link_token(&good);
        let by_link = |token: String| {
            let http = &http;
            let url = format!("{}/api/media/{token}", server.url);
            async move {
                let resp = http.get(url).send().await.unwrap();
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                (status, headers, resp.bytes().await.unwrap().to_vec())
            }
        };
        let (status, h, body) = by_link(token_of.clone()).await;
        assert_eq!((status, body == doc), (200, true));
        let cache = h["cache-control"].to_str().unwrap();
        let age: i64 = cache.strip_prefix("private, max-age=").unwrap().parse().unwrap();
        assert!((3500..=3600).contains(&age), "{cache}");
        // Tampered: its MAC, or its message id under the old MAC.
        let mut parts: Vec<String> = token_of.split('.').map(str::to_owned).collect();
        let mac = parts[4].clone();
        parts[4] = format!("{}{}", if mac.starts_with('A') { 'B' } else { 'A' }, &mac[1..]);
        let forged_mac = parts.join(".");
        parts[4] = mac;
        parts[3] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!("{doc_id}X"),
        );
        let forged_id = parts.join(".");
        for forged in [forged_mac, forged_id, "1.2.3.4".into(), "x".repeat(600)] {
            let (status, _, body) = by_link(forged.clone()).await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((status, v["error"]["code"].as_str()), (403, Some("invalid_media_link")), "{forged}");
        }
        // Expired.
        let old = svc
            .media_link_until("sub1", "agent1", &doc_id, now - 10)
            .await
            .unwrap();
        let (status, _, body) = by_link(link_token(&old)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (410, Some("media_link_expired")));
        // Genuine, but for another account: that account has no such file.
        let (c, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/api/whatsapp/sub1/agent2/connect", server.url),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(c, 200, "{v}");
        let other = svc
            .media_link_until("sub1", "agent2", &doc_id, now + 3600)
            .await
            .unwrap();
        let (status, _, body) = by_link(link_token(&other)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (404, Some("media_not_available")));

        // A file not stored yet: a genuine link does not fetch it; a caller with a token does,
        // and then the link gives it.
        let arrived = file(20_000, 5);
        let mut doc_in = wa_gateway::sim::MediaSend::new(
            wa_gateway::sim::MediaKind::Document,
            wa_gateway::sim::MediaData::Bytes(arrived.clone()),
        );
        doc_in.file_name = Some("in.pdf".into());
        let (in_id, _) = sim.phone_send_media(bob, me, doc_in).await.unwrap();
        eventually("the arriving file listed", async || {
            let (_, v) =
                call(&http, reqwest::Method::GET, &format!("{base}/messages"), Some(&admin), None)
                    .await;
            v["data"]["messages"]
                .as_array()?
                .iter()
                .any(|m| m["messageId"].as_str().is_some_and(|i| i.ends_with(&in_id)))
                .then_some(())
        })
        .await;
        let in_link = svc
            .media_link_until("sub1", "agent1", &in_id, now + 3600)
            .await
            .unwrap();
        let (status, _, body) = by_link(link_token(&in_link)).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (404, Some("media_not_available")), "{v}");
        let (status, _, body) =
            get_media(&http, &format!("{base}/messages/{in_id}/media"), &admin, None).await;
        assert_eq!((status, body == arrived), (200, true));
        let (status, _, body) = by_link(link_token(&in_link)).await;
        assert_eq!((status, body == arrived), (200, true));

        // An outbox row whose file record cannot be read fails at once, saying so, and the
        // send behind it goes.
        let side = wa_gateway::store::Store::open(&db).await.unwrap();
        let acct = side.account("sub1", "agent1").await.unwrap();
        let to = format!("{bob}@s.whatsapp.net");
        let (broken, _) = side
            .enqueue_send(
                acct,
                &wa_gateway::store::outbox::NewSend {
                    idem_key: None,
                    message_id: "3EB0BADRECORD0001",
                    to: &to,
                    body: "",
                    user_id: None,
                    now_ms: wa_gateway::util::clock::now_ms() as i64,
                    media: Some(("{\"kind\":", [0u8; 32])),
                },
            )
            .await
            .unwrap();
        let (c, v) = send(json!({ "to": bob, "message": "behind the broken one" })).await;
        assert_eq!((c, v["data"]["status"].as_str()), (200, Some("server_ack")), "{v}");
        let row = svc.await_send(broken.pk, Duration::from_secs(5)).await.unwrap();
        assert_eq!(row.state, wa_gateway::service::OutboxState::Failed);
        let result = row.result.unwrap();
        assert!(result.contains("stored file record is unreadable"), "{result}");
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn forms_take_fields_in_any_order_within_caps_and_given_thumbnails_reach_the_phone() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server =
            Server::start_opts(&sim, &db, media_options(&dir.path().join("blobs"), false)).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15552000031", "15552000032");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;
        let post = |form: reqwest::multipart::Form| {
            let (http, url, admin) = (&http, format!("{base}/send"), &admin);
            async move {
                let resp = http
                    .post(url)
                    .bearer_auth(admin)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let png = wa_gateway::sim::samples::photo_png(40, 30);
        let thumb = wa_gateway::sim::samples::photo_jpeg(24, 16);
        let part = |b: &[u8], name: &str| {
            reqwest::multipart::Part::bytes(b.to_vec()).file_name(name.to_owned())
        };

        // The file first, then `type` and a thumbnail: the PNG goes as the document it is
        // sent as (its bytes alone would make it an image), with exactly that thumbnail.
        let form = reqwest::multipart::Form::new()
            .part("file", part(&png, "pic.png"))
            .text("type", "document")
            .part("thumbnail", part(&thumb, "t.jpg"))
            .text("to", bob)
            .text("message", "as a document");
        let (c, v) = post(form).await;
        assert_eq!(c, 200, "{v}");
        let seen = phone_media(&sim, bob, &bare(&v["data"]["messageId"])).await;
        assert_eq!(
            (seen.kind.as_str(), seen.verified),
            ("document", true),
            "{seen:?}"
        );
        assert_eq!(seen.file_name.as_deref(), Some("pic.png"));
        assert_eq!(seen.shown.thumbnail_sha256, Some(sha256_hex(&thumb)));

        // JSON: an image with its own thumbnail keeps it (none is made in its place).
        let img = wa_gateway::sim::samples::photo_png(64, 48);
        let (c, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "media": { "base64": b64(&img), "thumbnail": b64(&thumb) } })),
        )
        .await;
        assert_eq!(c, 200, "{v}");
        let seen = phone_media(&sim, bob, &bare(&v["data"]["messageId"])).await;
        assert_eq!(
            (seen.kind.as_str(), seen.verified),
            ("image", true),
            "{seen:?}"
        );
        assert_eq!(seen.shown.thumbnail_sha256, Some(sha256_hex(&thumb)));

        // A thumbnail that is no JPEG, or too large: 415, by JSON and by form.
        let (c, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "media": { "base64": b64(&img), "thumbnail": b64(&png) } })),
        )
        .await;
        assert_eq!(
            (c, v["error"]["code"].as_str()),
            (415, Some("media_type_not_accepted")),
            "{v}"
        );
        let form = reqwest::multipart::Form::new()
            .text("to", bob)
            .part("file", part(&img, "a.png"))
            .part("thumbnail", part(&file(70 * 1024, 1), "t.jpg"));
        let (c, v) = post(form).await;
        assert_eq!(
            (c, v["error"]["code"].as_str()),
            (415, Some("media_type_not_accepted")),
            "{v}"
        );

        // Text fields are capped: the caption at 64 KiB, the others at 1 KiB.
        let form = reqwest::multipart::Form::new()
            .text("to", "1".repeat(2000))
            .part("file", part(&img, "a.png"));
        let (c, v) = post(form).await;
        assert_eq!(
            (c, v["error"]["code"].as_str()),
            (413, Some("field_too_long")),
            "{v}"
        );
        let form = reqwest::multipart::Form::new()
            .text("to", bob)
            .text("message", "m".repeat(65_537));
        let (c, v) = post(form).await;
        assert_eq!(
            (c, v["error"]["code"].as_str()),
            (413, Some("message_too_long")),
            "{v}"
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}
