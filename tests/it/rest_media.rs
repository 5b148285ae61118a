//! Media over REST against the simulator: a file sent by multipart, by base64 and by URL goes
//! out as a media message (uploaded to the CDN once, even when the request is retried with its
//! Idempotency-Key), and `GET …/messages/:id/media` gives back the exact bytes with its ETag
//! and ranges; bad files and URLs are refused with their codes.

use std::time::Duration;

use serde_json::{Value, json};
use wa_gateway::api::auth::Role;
use wa_gateway::service::ServiceOptions;
use wa_gateway::service::media::MediaSettings;
use wa_gateway::service::{Pacing, WebhookSettings};
use wa_gateway::sim::Simulator;

use crate::messaging::eventually;
use crate::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(150);

fn options(blobs: &std::path::Path) -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        },
        webhooks: WebhookSettings {
            // The URL test's file server is on loopback.
            allow_private: true,
            ..Default::default()
        },
        media: MediaSettings {
            blob_dir: Some(blobs.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
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
        let server = Server::start_opts(&sim, &db, options(&dir.path().join("blobs"))).await;
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
        assert_eq!(sim.cdn_media().len(), 1, "uploaded to WhatsApp once");
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
        let before = sim.cdn_media().len();
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
        assert_eq!(sim.cdn_media().len(), before);
        eventually("no staging file left", async || {
            (std::fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count() == 0).then_some(())
        })
        .await;
        server.stop().await;
    })
    .await
    .expect("in time");
}
