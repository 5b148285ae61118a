//! The simulator's media CDN as a client meets it: a logged-in device asks `media_conn`, uploads
//! over real HTTPS (trusting only the simulator's CA) as whatsmeow and Baileys do, and downloads
//! by the direct path it got back in each reference's URL form; then every CDN fault and refusal
//! a client must handle, and a 64 MiB upload that goes to disk as it arrives.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use wa_gateway::binary::Node;
use wa_gateway::client::{Client, IqError};
use wa_gateway::sim::{CdnConfig, CdnFault, Refusal, Simulator};

use super::client_lifecycle::paired;

/// `<iq xmlns="w:m" type=ty><child/></iq>`'s answer (`media_conn` with type set is the
/// reference clients' request).
async fn ask(client: &Client, ty: &str, child: &str) -> Result<Node, IqError> {
    let iq = Node::new("iq")
        .attr("xmlns", "w:m")
        .attr("type", ty.to_owned())
        .children(vec![Node::new(child.to_owned())]);
    client.query(iq, Duration::from_secs(5)).await
}

/// What `media_conn` answered: (auth, host).
async fn media_conn(client: &Client) -> (String, String) {
    let r = ask(client, "set", "media_conn").await.unwrap();
    let mc = r.child("media_conn").expect("media_conn");
    let host = mc
        .child("host")
        .and_then(|h| h.get_str("hostname"))
        .unwrap();
    (mc.get_str("auth").unwrap().into_owned(), host.into_owned())
}

/// An HTTPS client trusting the simulator's CA and nothing else.
fn https(sim: &Simulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(sim.ca_cert_pem().unwrap().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn token(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// POSTs `body` as Baileys does (`/mms/<type>/<token>?auth=…&token=…`, unpadded token).
async fn upload(
    http: &reqwest::Client,
    host: &str,
    kind: &str,
    auth: &str,
    body: &[u8],
) -> reqwest::Response {
    let t = token(body);
    http.post(format!(
        "https://{host}/mms/{kind}/{t}?auth={auth}&token={t}"
    ))
    .header("Origin", "https://web.whatsapp.com")
    .header("Content-Type", "application/octet-stream")
    .body(body.to_vec())
    .send()
    .await
    .unwrap()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

fn blob(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn a_device_uploads_with_its_media_conn_auth_and_downloads_the_same_bytes() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, _) = paired(&sim, "15550007001").await;

        // media_conn: the CDN's host and an auth, with the attributes whatsmeow requires.
        let r = ask(&client, "set", "media_conn").await.unwrap();
        let mc = r.child("media_conn").expect("media_conn");
        for a in ["auth", "ttl", "auth_ttl", "max_buckets"] {
            assert!(mc.get_str(a).is_some(), "{a} missing: {r}");
        }
        assert_eq!(mc.get_str("ttl").as_deref(), Some("300"));
        let host = mc.child("host").and_then(|h| h.get_str("hostname"));
        assert_eq!(host.as_deref(), Some(sim.cdn_host()));
        assert_eq!(sim.cdn_url(), format!("https://{}", sim.cdn_host()));
        let (auth, host) = media_conn(&client).await;
        assert_eq!(auth, mc.get_str("auth").unwrap(), "kept while it lives");
        // Other shapes are refused, as the rest of the iqs are.
        for (ty, child) in [("get", "media_conn"), ("set", "other")] {
            let e = ask(&client, ty, child).await;
            assert!(matches!(e, Err(IqError::Server { code: 400, .. })), "{e:?}");
        }

        let http = https(&sim);
        let body = blob(100_000, 1);
        let r = upload(&http, &host, "image", &auth, &body).await;
        assert_eq!(r.status(), 200);
        let up: serde_json::Value = r.json().await.unwrap();
        let dp = up["direct_path"].as_str().unwrap();
        assert!(dp.starts_with("/v/t62.7118-24/"), "{dp}");
        assert!(dp.contains("_n.enc?ccb=11-4&oh=01_"), "{dp}");
        assert!(dp.ends_with("&_nc_sid=5e03e0"), "{dp}");
        let url = up["url"].as_str().unwrap();
        assert_eq!(url, format!("https://{host}{dp}&mms3=true"));
        assert!(up["handle"].is_null());
        assert!(!up["object_id"].as_str().unwrap().is_empty());

        // Baileys downloads the URL's host + direct path; whatsmeow appends its parameters.
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), body);
        let padded = URL_SAFE.encode(Sha256::digest(&body));
        let wm = format!("https://{host}{dp}&hash={padded}&mms-type=image&__wa-mms=");
        assert_eq!(get(&http, &wm).await, (200, body.clone()));
        // One byte range, as Baileys asks for a part.
        let r = http
            .get(url)
            .header("Range", "bytes=16-31")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), body[16..32]);
        // HEAD: the length, no body.
        let r = http.head(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );

        // whatsmeow's form: a padded token, percent-encoded in the query.
        let doc = blob(5_000, 2);
        let t = URL_SAFE.encode(Sha256::digest(&doc));
        assert!(t.ends_with('='));
        let q = t.replace('=', "%3D");
        let r = http
            .post(format!(
                "https://{host}/mms/document/{t}?auth={auth}&token={q}"
            ))
            .header("Origin", "https://web.whatsapp.com")
            .header("Referer", "https://web.whatsapp.com/")
            .body(doc.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc_up: serde_json::Value = r.json().await.unwrap();
        assert!(
            doc_up["direct_path"]
                .as_str()
                .unwrap()
                .starts_with("/v/t62.7119-24/")
        );

        let listed = message_media(&sim);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].enc_sha256, STANDARD.encode(Sha256::digest(&body)));
        assert_eq!(
            (listed[0].size, listed[0].mms_type.as_str()),
            (100_000, "image")
        );
        assert_eq!(listed[0].direct_path, dp);
        assert_eq!(sim.media_bytes(dp).unwrap(), body);
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn uploads_and_downloads_are_refused_as_the_cdn_refuses_them() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, _) = paired(&sim, "15550007002").await;
        let (auth, host) = media_conn(&client).await;
        let http = https(&sim);
        let body = blob(4_096, 3);
        let t = token(&body);
        let post = |url: String, body: Vec<u8>| {
            let http = http.clone();
            async move {
                http.post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };

        // A token that is not the body's hash, tokens that disagree, no query token.
        let other = token(b"something else");
        let base = format!("https://{host}/mms/image");
        for url in [
            format!("{base}/{other}?auth={auth}&token={other}"),
            format!("{base}/{t}?auth={auth}&token={other}"),
            format!("{base}/{t}?auth={auth}"),
            format!("{base}/not-a-hash?auth={auth}&token=not-a-hash"),
            format!("https://{host}/mms/ptt/{t}?auth={auth}&token={t}"),
        ] {
            assert_eq!(post(url.clone(), body.clone()).await, 400, "{url}");
        }
        // Auth: missing, unknown → 401.
        assert_eq!(
            post(format!("{base}/{t}?token={t}"), body.clone()).await,
            401
        );
        assert_eq!(
            post(format!("{base}/{t}?auth=forged&token={t}"), body.clone()).await,
            401
        );
        // Past the size limit → 413.
        let mut small = sim.cdn_config();
        small.max_upload_bytes = 1_000;
        sim.set_cdn_config(small);
        assert_eq!(
            upload(&http, &host, "image", &auth, &body).await.status(),
            413
        );
        sim.set_cdn_config(CdnConfig::default());
        assert!(message_media(&sim).is_empty(), "nothing refused was kept");

        // The next upload answers 401; the client refreshes and retries, and it goes through.
        assert_eq!(sim.cdn_fault(&CdnFault::RefuseUploads(1)), 1);
        assert_eq!(
            upload(&http, &host, "image", &auth, &body).await.status(),
            401
        );
        let r = upload(&http, &host, "image", &auth, &body).await;
        assert_eq!(r.status(), 200);
        let up: serde_json::Value = r.json().await.unwrap();
        let dp = up["direct_path"].as_str().unwrap().to_owned();
        let url = format!("https://{host}{dp}");

        // Auth expired: 401, and media_conn hands out a fresh one that works.
        sim.cdn_fault(&CdnFault::ExpireAuth);
        assert_eq!(
            upload(&http, &host, "image", &auth, &body).await.status(),
            401
        );
        let (fresh, _) = media_conn(&client).await;
        assert_ne!(fresh, auth);
        assert_eq!(
            upload(&http, &host, "image", &fresh, &body).await.status(),
            200
        );

        // A tampered direct path (another name, a later expiry) → 403.
        let name_at = dp.find("-24/").unwrap() + 4;
        let mut tampered = dp.clone().into_bytes();
        tampered[name_at] = if tampered[name_at] == b'1' {
            b'2'
        } else {
            b'1'
        };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            get(&http, &format!("https://{host}{tampered}")).await.0,
            403
        );
        let later = dp.replace("&oe=", "&oe=F");
        assert_eq!(get(&http, &format!("https://{host}{later}")).await.0, 403);

        // Corrupt: the same length, one byte differs.
        assert_eq!(sim.cdn_fault(&CdnFault::Corrupt(dp.clone())), 1);
        let (status, got) = get(&http, &url).await;
        assert_eq!(status, 200);
        assert_eq!(got.len(), body.len());
        assert_eq!(got.iter().zip(&body).filter(|(a, b)| a != b).count(), 1);

        // Expired (through the control API, by its enc SHA-256): 404, and listed as expired.
        let control = wa_gateway::sim::control::router(sim.clone());
        let hash = STANDARD.encode(Sha256::digest(&body));
        let r = control
            .clone()
            .oneshot(
                axum::http::Request::post("/cdn/faults")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        serde_json::json!({"fault": "expire_media", "media": hash}).to_string(),
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(get(&http, &url).await.0, 404);
        assert_eq!(sim.media_bytes(&dp), Err(Refusal::NotFound));
        let r = control
            .oneshot(
                axum::http::Request::get("/cdn/media")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let listed: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap())
                .unwrap();
        let expired: Vec<bool> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["mms_type"].as_str().unwrap().starts_with("md-"))
            .map(|m| m["expired"].as_bool().unwrap())
            .collect();
        assert_eq!(expired, [true; 2], "both uploads had that hash: {listed}");

        // A link past its `oe` → 410.
        let mut now = sim.cdn_config();
        now.link_ttl = 0;
        sim.set_cdn_config(now);
        let r = upload(&http, &host, "video", &fresh, &body).await;
        let up: serde_json::Value = r.json().await.unwrap();
        let dp = up["direct_path"].as_str().unwrap();
        assert_eq!(get(&http, &format!("https://{host}{dp}")).await.0, 410);

        // A client that does not trust the simulator's CA cannot connect at all.
        let untrusting = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let e = untrusting.get(&url).send().await.unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

/// A 64 MiB upload is written to disk as it arrives: half-way through the body the part file
/// on disk already holds most of that half, and the simulator held a few MiB at most (the
/// counting allocator of this binary, on this current-thread runtime where the CDN's tasks run).
#[tokio::test]
async fn a_large_upload_streams_to_disk_without_being_held_in_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 64 << 20;
    const CHUNK: usize = 64 << 10;
    tokio::time::timeout(Duration::from_secs(120), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, _) = paired(&sim, "15550007003").await;
        let (auth, host) = media_conn(&client).await;
        let chunk = |i: usize| blob(CHUNK, i as u8);
        let mut h = Sha256::new();
        for i in 0..SIZE / CHUNK {
            h.update(chunk(i));
        }
        let t = URL_SAFE_NO_PAD.encode(h.finalize());

        let pem = sim.ca_cert_pem().unwrap().as_bytes();
        let tls = wa_gateway::socket::tls::client_config(
            &wa_gateway::socket::tls::parse_ca_pem(pem).unwrap(),
        )
        .unwrap();
        let tcp = tokio::net::TcpStream::connect(sim.cdn_host())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut s = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .unwrap();
        let part_size = || {
            std::fs::read_dir(sim.cdn_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        };
        let (peak, response) = super::alloc_bounds::peak_of_async(async {
            let head = format!(
                "POST /mms/video/{t}?auth={auth}&token={t} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\
                 Connection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let half = SIZE / CHUNK / 2;
            for i in 0..half {
                s.write_all(&chunk(i)).await.unwrap();
            }
            s.flush().await.unwrap();
            // The body is half sent: the server has written (nearly) all of it to disk.
            let mut waited = 0;
            while part_size() < (SIZE / 2 - (4 << 20)) as u64 {
                assert!(
                    waited < 2_000,
                    "the part file stayed at {} bytes",
                    part_size()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            for i in half..SIZE / CHUNK {
                s.write_all(&chunk(i)).await.unwrap();
            }
            s.flush().await.unwrap();
            let mut response = Vec::new();
            // hyper may close without TLS's close_notify once it answered `Connection: close`.
            if let Err(e) = s.read_to_end(&mut response).await {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
            }
            String::from_utf8_lossy(&response).into_owned()
        })
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let listed = message_media(&sim);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, SIZE as u64);
        assert!(peak < 8 << 20, "the upload held {peak} bytes at its peak");
        assert_eq!(part_size(), 0, "no part file left behind");
        client.shutdown().await;
    })
    .await
    .expect("in time");
}

/// What the CDN holds of messages' media: app-state snapshots (`md-app-state`) and history
/// chunks (`md-msg-hist`) the simulated phones upload at linking are left out.
pub(crate) fn message_media(sim: &Simulator) -> Vec<wa_gateway::sim::MediaInfo> {
    sim.cdn_media()
        .into_iter()
        .filter(|m| !m.mms_type.starts_with("md-"))
        .collect()
}
