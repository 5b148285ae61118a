//! Media transfer through the client against `wa-gateway simulate` (a separate process, so its
//! CPU is not counted) over loopback HTTPS: a file kept in the blob store is encrypted while it
//! streams to the simulator's CDN (read twice, as the product does: once for the hashes the
//! upload URL names, once as the body), then downloaded, verified while it streams and written
//! into a staged blob that is committed, the product's own source and sink.
//! Run: `cargo bench --bench media_cdn` (MEDIA_MIB=64 per file, MEDIA_ROUNDS=3). Prints MiB/s
//! and this process's CPU milliseconds per MiB for each direction, and the simulator's.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use wa_gateway::client::content::Kind;
use wa_gateway::client::media::{MediaFuture, MediaSink, MediaSource};
use wa_gateway::client::media_ref::MediaRef;
use wa_gateway::client::{Client, ConnState, Event};
use wa_gateway::media::MediaType;
use wa_gateway::store::Store;
use wa_gateway::store::blobs::{BlobId, BlobStore, FsBlobs, StagedBlob};

mod support;
use support::{cpu, cpu_of, env_num, options, post};

/// A kept blob as an upload source, as the service's outbox reads one.
struct Kept {
    blobs: Arc<FsBlobs>,
    id: BlobId,
    len: u64,
}

impl MediaSource for Kept {
    fn len(&self) -> u64 {
        self.len
    }
    fn open(&self) -> MediaFuture<'_, Pin<Box<dyn AsyncRead + Send>>> {
        Box::pin(async move {
            let r = self
                .blobs
                .open(self.id, None)
                .await
                .map_err(std::io::Error::other)?
                .ok_or_else(|| std::io::Error::other("blob gone"))?;
            Ok(r.body as Pin<Box<dyn AsyncRead + Send>>)
        })
    }
}

/// A staged blob as a download sink, as the service's downloader writes one.
struct Staged(Box<dyn StagedBlob>);

impl MediaSink for Staged {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> MediaFuture<'a, ()> {
        Box::pin(async move { self.0.write(chunk).await.map_err(std::io::Error::other) })
    }
}

fn main() {
    let mib = env_num("MEDIA_MIB", 64);
    let rounds = env_num("MEDIA_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
            .arg("simulate")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
        let (opts, control) = options(&lines.next_line().await.unwrap().unwrap());
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let sim_pid = sim.id().map(|p| p.to_string()).unwrap_or_default();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
            .await
            .unwrap();
        let blobs = Arc::new(FsBlobs::open(dir.path().join("blobs")).unwrap());
        let me = "15559000001";
        let account = store.account("bench", me).await.unwrap();
        let (client, mut events) = Client::start(opts, Arc::new(store.creds(account)));
        let code = loop {
            if let Some(Event::QrCode { code, .. }) = events.recv().await {
                break code;
            }
        };
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let body = serde_json::json!({ "qr": code }).to_string();
        assert_eq!(post(&control, &format!("/phones/{me}/scan"), &body).await, 200);
        client.wait_for(|s| *s == ConnState::Connected).await;

        // The file: pseudo-random bytes (nothing compresses them), kept as a blob.
        let len = (mib as u64) << 20;
        let mut staged = blobs.stage(len).await.unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for b in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            staged.write(&chunk).await.unwrap();
        }
        let (id, _) = staged.commit().await.unwrap();
        let src = Kept {
            blobs: blobs.clone(),
            id,
            len,
        };
        // One small transfer first, so media_conn and the HTTPS connection are warm.
        let mut small = blobs.stage(1024).await.unwrap();
        small.write(&[7u8; 1024]).await.unwrap();
        let (small_id, _) = small.commit().await.unwrap();
        let warm = Kept {
            blobs: blobs.clone(),
            id: small_id,
            len: 1024,
        };
        client
            .upload_media(MediaType::Document, &warm)
            .await
            .unwrap();

        println!("media through the simulator's CDN, {mib} MiB per file, {rounds} rounds");
        for round in 0..rounds {
            let (t0, c0, s0) = (Instant::now(), cpu(), cpu_of(&sim_pid));
            let up = client
                .upload_media(MediaType::Document, &src)
                .await
                .unwrap();
            let (up_wall, up_cpu, up_sim) =
                (t0.elapsed(), cpu() - c0, cpu_of(&sim_pid).saturating_sub(s0));
            let r = MediaRef {
                kind: Kind::Document,
                media_key: Some(up.media_key),
                direct_path: Some(up.direct_path.clone()),
                url: Some(up.url.clone()),
                file_sha256: Some(up.file_sha256),
                file_enc_sha256: Some(up.file_enc_sha256),
                file_length: Some(up.file_length),
                mimetype: None,
                file_name: None,
                seconds: None,
                width: None,
                height: None,
            };
            let (t1, c1, s1) = (Instant::now(), cpu(), cpu_of(&sim_pid));
            let mut sink = Staged(blobs.stage(len).await.unwrap());
            client.download_media(&r, len, &mut sink).await.unwrap();
            let (got, n) = sink.0.commit().await.unwrap();
            let (down_wall, down_cpu, down_sim) =
                (t1.elapsed(), cpu() - c1, cpu_of(&sim_pid).saturating_sub(s1));
            assert_eq!((got, n), (id, len), "the same bytes came back");
            let line = |what: &str, wall: Duration, used: Duration, sim: Duration| {
                println!(
                    "round {round} {what:8} {:7.1} MiB/s  ours {:5.2} ms CPU/MiB  simulator {:5.2} ms CPU/MiB",
                    mib as f64 / wall.as_secs_f64(),
                    used.as_secs_f64() * 1000.0 / mib as f64,
                    sim.as_secs_f64() * 1000.0 / mib as f64,
                );
            };
            line("upload", up_wall, up_cpu, up_sim);
            line("download", down_wall, down_cpu, down_sim);
        }
    });
}
