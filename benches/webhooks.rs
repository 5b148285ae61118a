//! Webhook delivery on the product's path: inbound messages committed through the store's group
//! committer (each with its webhook event, one transaction), then the service's dispatcher
//! drains the durable queue to a loopback receiver (signed POSTs, one chat in order, many chats
//! at once). Reports the commit cost with and without a webhook, and delivery throughput and CPU
//! per 1,000 events (the receiver runs on its own thread; its CPU is subtracted).
//! Run: `cargo bench --bench webhooks` (WEBHOOK_BENCH_N events, default 5000, over
//! WEBHOOK_BENCH_CHATS chats, default 100).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::CredsStore;
use wa_gateway::client::messages::{MessageStatus, StoredMessage};
use wa_gateway::service::{Service, ServiceOptions};
use wa_gateway::signal::SignalChanges;
use wa_gateway::store::Store;

mod support;
use support::{cpu, env_num};

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    support::cpu_of("thread-self")
}

fn message(i: usize, chats: usize) -> StoredMessage {
    let chat = Jid::new(format!("1555{:07}", i % chats), Server::User);
    StoredMessage {
        id: format!("BENCH{i:08}"),
        chat: chat.clone(),
        sender: chat,
        from_me: false,
        timestamp: 1_700_000_000 + i as u64,
        push_name: None,
        text: Some(format!("webhook bench message {i}")),
        raw: vec![0; 64],
        status: MessageStatus::Received,
        ..StoredMessage::default()
    }
}

/// Commits `n` inbound messages concurrently (as many accounts' workers do) and returns the
/// wall time.
async fn commit_all(
    store: &Store,
    account: i64,
    n: usize,
    chats: usize,
    offset: usize,
) -> Duration {
    let creds = Arc::new(store.creds(account));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let creds = creds.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
                creds
                    .commit_message(&SignalChanges::default(), &message(offset + i, chats))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn main() {
    let n = env_num("WEBHOOK_BENCH_N", 5000);
    let chats = env_num("WEBHOOK_BENCH_CHATS", 100);

    // The receiver: its own thread and runtime, so its CPU can be told apart.
    let received = Arc::new(AtomicUsize::new(0));
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let r = received.clone();
    let receiver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |_body: axum::body::Bytes| {
                    let r = r.clone();
                    async move {
                        r.fetch_add(1, Ordering::Relaxed);
                        "ok"
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            url_tx
                .send(format!("http://{}/hook", l.local_addr().unwrap()))
                .unwrap();
            axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            thread_cpu()
        })
    });
    let url = url_rx.recv().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::open(&db).await.unwrap();
        let plain = store.account("bench", "no-hook").await.unwrap();
        let hooked = store.account("bench", "hook").await.unwrap();
        store.open_connection(hooked, None, 0).await.unwrap();
        store
            .set_webhook(
                hooked,
                &url,
                b"bench-webhook-secret",
                &["message.received"],
                None,
            )
            .await
            .unwrap();

        let without = commit_all(&store, plain, n, chats, 0).await;
        let with = commit_all(&store, hooked, n, chats, 0).await;
        println!(
            "commit {n} inbound messages (16 concurrent writers): without a webhook {:.0} ms \
             ({:.0}/s), with one (row + event, one transaction) {:.0} ms ({:.0}/s)",
            without.as_secs_f64() * 1e3,
            n as f64 / without.as_secs_f64(),
            with.as_secs_f64() * 1e3,
            n as f64 / with.as_secs_f64(),
        );

        // Delivery: the service's dispatcher drains what is queued.
        let cpu0 = cpu();
        let start = Instant::now();
        // No client runs: only the dispatcher works here.
        let (client, _) = support::options(
            r#"{"ws_url": "ws://127.0.0.1:9", "control_url": "", "root_public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#,
        );
        // The receiver is on loopback.
        let options = ServiceOptions {
            webhooks: wa_gateway::service::WebhookSettings {
                allow_private: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let service = Service::with_options(store.clone(), client, options);
        while received.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = start.elapsed();
        let ours = cpu().saturating_sub(cpu0);
        service.shutdown().await;
        let _ = stop_tx.send(());
        let receiver_cpu = receiver.join().unwrap();
        let ours = ours.saturating_sub(receiver_cpu);
        println!(
            "deliver {n} events over {chats} chats: {:.0} ms wall ({:.0} events/s), \
             {:.0} ms CPU of ours ({:.1} ms per 1,000 events; the receiver's {:.0} ms excluded)",
            wall.as_secs_f64() * 1e3,
            n as f64 / wall.as_secs_f64(),
            ours.as_secs_f64() * 1e3,
            ours.as_secs_f64() * 1e6 / n as f64,
            receiver_cpu.as_secs_f64() * 1e3,
        );
        let delivered = store
            .webhook_events(hooked, Some(wa_gateway::store::DeliveryState::Delivered), 1, 0)
            .await
            .unwrap();
        assert_eq!(delivered.len(), 1, "recorded as delivered");
    });
}
