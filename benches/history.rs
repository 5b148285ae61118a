//! History sync ingest on the product path: `wa-gateway simulate` (a separate process, so its
//! CPU and memory are not counted) is seeded with CHATS × PER_CHAT messages, our client links
//! and receives them as downloadable `md-msg-hist` chunks of 5,000 messages, downloads each
//! through the media download core (verified into a temporary file), inflates and parses it as
//! a stream and stores it in batches into SQLite (FULL durability), as the product does.
//! Run: `cargo bench --bench history` (HIST_CHATS=100, HIST_PER_CHAT=1000). Prints messages/s
//! (wall and per CPU second of this process) and this process's peak RSS (VmHWM) over its
//! RSS before linking.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};
use wa_gateway::client::{Client, ConnState, Event};
use wa_gateway::store::Store;

mod support;
use support::{cpu, env_num, options, post};

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let chats = env_num("HIST_CHATS", 100);
    let per_chat = env_num("HIST_PER_CHAT", 1000);
    let total = (chats * per_chat) as u64;
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
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
            .await
            .unwrap();
        let me = "15559100001";
        let seed = serde_json::json!({ "chats": chats, "messages": per_chat }).to_string();
        assert_eq!(
            post(&control, &format!("/phones/{me}/history"), &seed).await,
            200
        );
        let account = store.account("bench", me).await.unwrap();
        let (client, mut events) = Client::start(opts, Arc::new(store.creds(account)));
        let code = loop {
            if let Some(Event::QrCode { code, .. }) = events.recv().await {
                break code;
            }
        };
        let rss0 = status_kib("VmRSS:");
        let body = serde_json::json!({ "qr": code }).to_string();
        assert_eq!(
            post(&control, &format!("/phones/{me}/scan"), &body).await,
            200
        );
        client.wait_for(|s| *s == ConnState::Connected).await;
        let (t0, c0) = (Instant::now(), cpu());
        let (mut stored, mut read, mut chunks) = (0u64, 0u64, 0u64);
        let mut first: Option<Instant> = None;
        while read < total {
            match events.recv().await {
                Some(Event::HistorySync(r)) if r.sync_type == Some(2) => {
                    first.get_or_insert_with(Instant::now);
                    stored += r.stored;
                    read += r.messages;
                    chunks += 1;
                }
                Some(Event::HistorySyncFailed { reason, .. }) => panic!("chunk failed: {reason}"),
                Some(_) => {}
                None => panic!("client ended"),
            }
        }
        let (wall, used) = (t0.elapsed(), cpu() - c0);
        let peak = status_kib("VmHWM:");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE history = 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows as u64, total);
        println!(
            "history ingest: {total} messages ({chats} chats × {per_chat}) in {chunks} chunks, \
             {stored} stored"
        );
        println!(
            "  wall {:.2} s from login to the last chunk → {:.0} messages/s (simulator's chunk \
             building included)",
            wall.as_secs_f64(),
            total as f64 / wall.as_secs_f64()
        );
        println!(
            "  our CPU {:.2} s → {:.0} messages per CPU second",
            used.as_secs_f64(),
            total as f64 / used.as_secs_f64().max(0.001)
        );
        println!(
            "  RSS before linking {} MiB, peak {} MiB (+{} MiB)",
            rss0 / 1024,
            peak / 1024,
            peak.saturating_sub(rss0) / 1024
        );
        client.shutdown().await;
    });
}
