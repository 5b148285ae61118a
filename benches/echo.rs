//! Text throughput of our clients against `wa-gateway simulate` (a separate process, so its
//! CPU is not counted) over loopback: each client sends texts to its own echoing simulated user
//! and waits for every echo to be stored. One round trip is: encrypt, Noise, frame, server ack,
//! (in the simulator: decrypt, echo, encrypt), our decrypt, the group-committed store, receipt.
//! Run: `cargo bench --bench echo` (ECHO_CLIENTS=1,10,100, ECHO_TOTAL=2000 round trips per
//! configuration, ECHO_WINDOW=16 sends in flight per client). Prints round trips/s, this
//! process's CPU time per 1,000 round trips, and SQLite transactions per round trip.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::{Client, ConnState, Event};
use wa_gateway::store::Store;

mod support;
use support::{cpu, cpu_of, env_num, options, post};

async fn inbound(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE from_me = 0")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn main() {
    let counts: Vec<usize> = std::env::var("ECHO_CLIENTS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let total = env_num("ECHO_TOTAL", 2000);
    let window = env_num("ECHO_WINDOW", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        for (run, &n) in counts.iter().enumerate() {
            let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
                .arg("simulate")
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
            let (opts, control) = options(&lines.next_line().await.unwrap().unwrap());
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
                .await
                .unwrap();
            let mut clients = Vec::new();
            for i in 0..n {
                let me = format!("155{run}{i:07}");
                let echo = format!("166{run}{i:07}");
                let account = store.account("bench", &me).await.unwrap();
                let (client, mut events) =
                    Client::start(opts.clone(), Arc::new(store.creds(account)));
                let code = loop {
                    if let Some(Event::QrCode { code, .. }) = events.recv().await {
                        break code;
                    }
                };
                tokio::spawn(async move { while events.recv().await.is_some() {} });
                let body = serde_json::json!({ "qr": code }).to_string();
                assert_eq!(
                    post(&control, &format!("/phones/{me}/scan"), &body).await,
                    200
                );
                client.wait_for(|s| *s == ConnState::Connected).await;
                // One device each side besides ours: the account's phone, the echoing phone.
                for (number, path, body) in [
                    (&me, "devices", r#"{"count":1}"#),
                    (&echo, "devices", r#"{"count":1}"#),
                    (&echo, "echo", r#"{"on":true}"#),
                ] {
                    assert_eq!(
                        post(&control, &format!("/phones/{number}/{path}"), body).await,
                        200
                    );
                }
                clients.push((Arc::new(client), Jid::new(echo, Server::User)));
            }
            // Keys uploaded and greetings done before the clock starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let per = total / n;
            let base = inbound(&store).await;
            let commits = store.commit_stats();
            let sim_pid = sim.id().map(|p| p.to_string()).unwrap_or_default();
            let (t0, c0, s0) = (Instant::now(), cpu(), cpu_of(&sim_pid));
            let mut tasks = Vec::new();
            for (client, to) in &clients {
                for w in 0..window.min(per) {
                    let (client, to) = (client.clone(), to.clone());
                    let mine = (w..per).step_by(window).count();
                    tasks.push(tokio::spawn(async move {
                        for k in 0..mine {
                            client
                                .send_text(&to, &format!("ping {w}/{k}"))
                                .await
                                .unwrap();
                        }
                    }));
                }
            }
            for t in tasks {
                t.await.unwrap();
            }
            let want = base + (per * n) as i64;
            while inbound(&store).await < want {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (wall, used) = (t0.elapsed(), cpu() - c0);
            let sim_used = cpu_of(&sim_pid).saturating_sub(s0);
            let after = store.commit_stats();
            let trips = (per * n) as f64;
            let (tx, jobs) = (
                after.transactions - commits.transactions,
                after.jobs - commits.jobs,
            );
            println!(
                "echo: clients={n} round_trips={} window={window} wall={:.2}s rate={:.0}/s \
                 cpu_per_1000={:.0}ms sim_cpu_per_1000={:.0}ms sqlite_tx_per_trip={:.2} \
                 writes_per_trip={:.2} rows_per_tx={:.1}",
                per * n,
                wall.as_secs_f64(),
                trips / wall.as_secs_f64(),
                used.as_secs_f64() * 1000.0 / trips * 1000.0,
                sim_used.as_secs_f64() * 1000.0 / trips * 1000.0,
                tx as f64 / trips,
                jobs as f64 / trips,
                jobs as f64 / tx.max(1) as f64,
            );
            drop(clients);
            store.close().await;
            let _ = sim.kill().await;
        }
    });
}
