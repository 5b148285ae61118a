//! Marginal memory of an idle connected client: RSS of this process with N clients logged in to
//! `wa-gateway simulate` (run as a separate process, so its memory is not counted) minus RSS
//! with none, divided by N. Run: `cargo bench --bench idle_rss` (N = 100, or IDLE_RSS_N).
//! IDLE_RSS_STORE=sqlite (default: one SQLite database and pool for all accounts, as the service
//! runs) or memory (credentials and Signal stores on the heap). IDLE_RSS_PHASE=pair (default:
//! the clients are new devices, paired while measured) or login (a service restart: the accounts
//! are paired by a child process first, then this process logs them all in and is measured).
//! IDLE_RSS_TLS=1: the simulator serves `wss://` (`simulate --tls`) and every client holds a TLS
//! session, as a deployment talking to WhatsApp does (one shared rustls configuration).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use wa_gateway::client::{Client, ClientOptions, ConnState, Event, MemoryCreds};
use wa_gateway::store::Store;

mod support;
use support::{options, post};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("IDLE_RSS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // The child of a `login` run only pairs the accounts into the given database.
        if let Ok(line) = std::env::var("IDLE_RSS_PAIR_INTO") {
            let (db, sim_line) = line.split_once('\n').unwrap();
            let (opts, control) = options(sim_line);
            let store = Store::open(db).await.unwrap();
            let clients = pair_all(&opts, &control, n, Some(&store)).await;
            drop(clients);
            return;
        }
        let tls = std::env::var("IDLE_RSS_TLS").as_deref() == Ok("1");
        let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
            .args(if tls { &["simulate", "--tls"][..] } else { &["simulate"][..] })
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
        let sim_line = lines.next_line().await.unwrap().unwrap();
        let (opts, control) = options(&sim_line);
        let sqlite = std::env::var("IDLE_RSS_STORE").as_deref() != Ok("memory");
        let login = std::env::var("IDLE_RSS_PHASE").as_deref() == Ok("login");
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        if login {
            let status = tokio::process::Command::new(std::env::current_exe().unwrap())
                .env("IDLE_RSS_PAIR_INTO", format!("{db}\n{sim_line}"))
                .env("IDLE_RSS_N", n.to_string())
                .status()
                .await
                .unwrap();
            assert!(status.success());
        }
        let store = Store::open(&db).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib();
        let clients = if login {
            let mut clients = Vec::new();
            for i in 0..n {
                let account = store.account("bench", &format!("agent-{i}")).await.unwrap();
                let (client, mut events) = Client::start(opts.clone(), Arc::new(store.creds(account)));
                tokio::spawn(async move { while events.recv().await.is_some() {} });
                client.wait_for(|s| *s == ConnState::Connected).await;
                clients.push(client);
            }
            clients
        } else {
            pair_all(&opts, &control, n, sqlite.then_some(&store)).await
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib();
        println!(
            "idle_rss: store={} phase={} tls={tls} N={n} rss_before={before} KiB rss_after={after} KiB marginal={:.1} KiB per connected idle client",
            if sqlite { "sqlite" } else { "memory" },
            if login { "login" } else { "pair" },
            (after.saturating_sub(before)) as f64 / n as f64
        );
        drop(clients);
        let _ = sim.kill().await;
    });
}

/// Pairs `n` new devices (in `store`, or in memory) and waits until each is connected.
async fn pair_all(
    opts: &ClientOptions,
    control: &str,
    n: usize,
    store: Option<&Store>,
) -> Vec<Client> {
    let mut clients = Vec::new();
    for i in 0..n {
        let (client, mut events) = match store {
            Some(store) => {
                let account = store.account("bench", &format!("agent-{i}")).await.unwrap();
                Client::start(opts.clone(), Arc::new(store.creds(account)))
            }
            None => Client::start(opts.clone(), Arc::new(MemoryCreds::default())),
        };
        let code = loop {
            if let Some(Event::QrCode { code, .. }) = events.recv().await {
                break code;
            }
        };
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let body = serde_json::json!({ "qr": code }).to_string();
        assert_eq!(
            post(control, &format!("/phones/1555{i:07}/scan"), &body).await,
            200
        );
        client.wait_for(|s| *s == ConnState::Connected).await;
        clients.push(client);
    }
    clients
}
