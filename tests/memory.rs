//! Files are never whole in the service's memory: a 300 MB document sent by our REST account
//! (a multipart body streamed from disk) and one received from a simulated user (fetched
//! automatically, then read back through `GET …/media`) raise the `serve` process's peak
//! resident set by less than 32 MiB. The simulator runs in its own process, so its memory is
//! not counted. Linux only: the peak is read from `/proc/<pid>/status`.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

mod procs;
use procs::*;

/// The size of each big file.
const BIG: u64 = 300_000_000;
/// The most the service's peak RSS may grow moving both.
const MAX_GROWTH: u64 = 32 << 20;

/// The peak resident set (`VmHWM`) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Writes `len` incompressible bytes to `path` a chunk at a time; their SHA-256, hex.
async fn write_file(path: &Path, len: u64, seed: u64) -> String {
    let mut f = tokio::fs::File::create(path).await.unwrap();
    let mut hash = sha2::Sha256::new();
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        let chunk = noise(n, seed.wrapping_add(i));
        hash.update(&chunk);
        f.write_all(&chunk).await.unwrap();
        left -= n as u64;
        i += 1;
    }
    f.sync_all().await.unwrap();
    hash.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends the file at `path` to `to` as a document, a multipart body streamed from disk; the
/// message id (bare).
async fn send_file(apis: &Apis, to: &str, path: &Path, len: u64) -> String {
    let file = tokio::fs::File::open(path).await.unwrap();
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), len)
            .file_name("big.bin")
            .mime_str("application/octet-stream")
            .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("to", to.to_owned())
        .text("type", "document")
        .text("wait", "false")
        .part("file", part);
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
    v["data"]["messageId"]
        .as_str()
        .unwrap()
        .rsplit('_')
        .next()
        .unwrap()
        .to_owned()
}

/// Waits until `number`'s phone has checked the file of message `id`: its SHA-256.
async fn checked_at(apis: &Apis, number: &str, id: &str) -> String {
    let seen = until_within("the phone to check the file", LIMIT, async || {
        apis.phone_messages(number)
            .await
            .into_iter()
            .find(|m| m["id"] == json!(id) && m["media"].is_object())
            .map(|m| m["media"].clone())
    })
    .await;
    assert_eq!(seen["verified"], json!(true), "{seen}");
    seen["sha256"].as_str().unwrap().to_owned()
}

/// Has phone `from` send us a generated document of `len` bytes, waits until the service has
/// kept it, and reads it back through `GET …/media`, hashed as it streams: its length and
/// SHA-256 against what the phone sent.
async fn receive_file(apis: &Apis, from: &str, me: &str, len: u64, seed: u64) {
    let (code, sent) = apis
        .post(
            format!("{}/phones/{from}/send", apis.control),
            json!({ "to": me, "media": {
                "kind": "document",
                "generate": { "bytes": len, "seed": seed },
                "fileName": "big.pdf",
            }}),
        )
        .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let row = until_within("the file kept", LIMIT, async || {
        let m = apis.message(&id).await?;
        (m["media"]["state"] != json!("pending")).then_some(m)
    })
    .await;
    assert_eq!(row["media"]["state"], json!("stored"), "{row}");
    let mut r = apis
        .http
        .get(format!("{}/messages/{id}/media", apis.api))
        .bearer_auth(&apis.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (mut hash, mut got) = (sha2::Sha256::new(), 0u64);
    while let Some(chunk) = r.chunk().await.unwrap() {
        hash.update(&chunk);
        got += chunk.len() as u64;
    }
    assert_eq!(got, len);
    let sha: String = hash.finalize().iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(json!(sha), sent["sha256"]);
}

/// How long one big file may take to cross (a debug build on a small CI machine).
const LIMIT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_files_cross_the_service_in_bounded_memory() {
    tokio::time::timeout(Duration::from_secs(1500), async {
        let began = std::time::Instant::now();
        let (_sim, info) = start(Command::new(BIN).arg("simulate"), "control_url").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut server, listening) = start(
            serve(dir.path(), &info).env("WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES", "400000000"),
            "listening",
        )
        .await;
        let pid = server.id().unwrap();
        let apis = Apis::new(&listening, &info);
        let (me, bob) = ("15553300001", "15553300002");
        apis.devices(bob, 1).await;
        apis.link(me).await;
        apis.reachable(bob, me).await;

        // Warmed up: a small file each way, so pools, TLS sessions and buffers exist before
        // the baseline.
        let small = dir.path().join("small.bin");
        let small_sha = write_file(&small, 200_000, 1).await;
        let id = send_file(&apis, bob, &small, 200_000).await;
        assert_eq!(checked_at(&apis, bob, &id).await, small_sha);
        receive_file(&apis, bob, me, 200_000, 2).await;
        let baseline = peak_rss(pid);

        let big = dir.path().join("big.bin");
        let big_sha = write_file(&big, BIG, 3).await;
        let t = std::time::Instant::now();
        let id = send_file(&apis, bob, &big, BIG).await;
        assert_eq!(checked_at(&apis, bob, &id).await, big_sha);
        let sent_in = t.elapsed();
        let after_send = peak_rss(pid);
        let t = std::time::Instant::now();
        receive_file(&apis, bob, me, BIG, 4).await;
        let received_in = t.elapsed();
        let end = peak_rss(pid);
        eprintln!(
            "peak RSS {} KiB after warm-up, {} KiB after the send (+{} KiB), {} KiB at the end \
             (+{} KiB); sent in {sent_in:?}, received in {received_in:?}, {:?} in all",
            baseline >> 10,
            after_send >> 10,
            (after_send - baseline) >> 10,
            end >> 10,
            (end - baseline) >> 10,
            began.elapsed()
        );
        assert!(
            end - baseline < MAX_GROWTH,
            "peak RSS grew {} KiB moving two {BIG}-byte files",
            (end - baseline) >> 10
        );
        server.kill().await.unwrap();
    })
    .await
    .expect("in time");
}
