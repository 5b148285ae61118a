//! Inbound commits on the product's path, `synchronous=FULL` beside `NORMAL`: each message
//! committed through the store's group committer with what receiving one writes (the sender's
//! session record, the row, its webhook event), by 1, 10 or 100 concurrent callers (accounts'
//! receive loops), each waiting for its own commit as the client does before it receipts.
//! Reports messages/s, wall time per message and rows per transaction.
//! Run: `cargo bench --bench commit` (COMMIT_BENCH_N messages per run, default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::CredsStore;
use wa_gateway::client::messages::{MessageStatus, StoredMessage};
use wa_gateway::signal::{
    CiphertextMessage, KeyPair, LocalIdentity, OsKeys, PreKeyBundle, PreKeySignalMessage,
    ProtocolAddress, SessionRecord, SignalChanges, SignalMessage, initiate,
};
use wa_gateway::store::{Durability, Store};

mod support;
use support::env_num;

/// A real, acknowledged session record (what a receive writes back each time).
fn session_record() -> SessionRecord {
    let id = |reg| LocalIdentity {
        key_pair: KeyPair::generate(),
        registration_id: reg,
    };
    let (alice, bob) = (id(1), id(2));
    let signed = KeyPair::generate();
    let bundle = PreKeyBundle {
        registration_id: bob.registration_id,
        pre_key: None,
        signed_pre_key_id: 1,
        signed_pre_key: signed.public,
        signed_pre_key_signature: bob
            .key_pair
            .sign(&wa_gateway::signal::curve::with_type(&signed.public)),
        identity_key: bob.key_pair.public,
    };
    let mut a = SessionRecord::new();
    a.promote(initiate(&alice, &bundle, &mut OsKeys).unwrap());
    let CiphertextMessage::PreKey(first) = a.encrypt(b"hi").unwrap() else {
        panic!("a first message is a pkmsg")
    };
    let mut b = SessionRecord::new();
    b.decrypt_pre_key(
        &PreKeySignalMessage::decode(&first).unwrap(),
        &bob,
        Some(&signed),
        None,
        &mut OsKeys,
    )
    .unwrap();
    let answer = SignalMessage::decode(b.encrypt(b"hello").unwrap().bytes()).unwrap();
    a.decrypt(&answer, &mut OsKeys).unwrap();
    a
}

fn message(i: usize) -> StoredMessage {
    let chat = Jid::new(format!("1555{:07}", i % 100), Server::User);
    StoredMessage {
        id: format!("COMMIT{i:08}"),
        chat: chat.clone(),
        sender: chat,
        timestamp: 1_700_000_000 + i as u64,
        text: Some(format!("commit bench message {i}")),
        raw: vec![0; 64],
        status: MessageStatus::Received,
        ..StoredMessage::default()
    }
}

/// One run: `n` messages by `callers` concurrent callers; wall time and transactions.
async fn run(durability: Durability, callers: usize, n: usize) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open_tuned(&url, None, durability).await.unwrap();
    let account = store.account("sub", "bench").await.unwrap();
    // Every message announces itself to a webhook, as a deployment with one does.
    store
        .set_webhook(
            account,
            "http://127.0.0.1:9/hook",
            b"bench-secret-0123456789",
            &["message.received"],
            None,
        )
        .await
        .unwrap();
    let creds = Arc::new(store.creds(account));
    let record = session_record();
    let before = store.commit_stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (creds, record) = (creds.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(callers) {
                let m = message(i);
                let changes = SignalChanges {
                    sessions: vec![(ProtocolAddress::from_jid(&m.sender), record.clone())],
                    ..Default::default()
                };
                creds.commit_message(&changes, &m).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = start.elapsed();
    let tx = store.commit_stats().transactions - before.transactions;
    store.close().await;
    (wall, tx)
}

fn main() {
    let n = env_num("COMMIT_BENCH_N", 2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| synchronous | callers | messages/s | per message | rows per transaction |");
    println!("|---|---|---|---|---|");
    for callers in [1, 10, 100] {
        for (name, d) in [("NORMAL", Durability::Normal), ("FULL", Durability::Full)] {
            let (wall, tx) = rt.block_on(run(d, callers, n));
            println!(
                "| {name} | {callers} | {:.0} | {:.0} µs | {:.1} |",
                n as f64 / wall.as_secs_f64(),
                wall.as_secs_f64() * 1e6 / n as f64,
                n as f64 / tx.max(1) as f64
            );
        }
    }
}
