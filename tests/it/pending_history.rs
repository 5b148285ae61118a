//! The durable queue of history notifications (migration 0022, and the in-memory store): kept
//! once per message id (a redelivery after a crash adds nothing), taken in arrival order,
//! attempts counted, a stored chunk's row only waits for its receipt, capped per account, the
//! notification sealed at rest under a store key, and wiped with the account's keys.

use wa_gateway::client::history_store::{MAX_PENDING_HISTORY, PendingHistoryStore, Queued};
use wa_gateway::client::{CredsStore, MemoryCreds};
use wa_gateway::store::{Store, StoreKey};

/// A notification's bytes: recognisable in a database file.
fn notification(i: usize) -> Vec<u8> {
    format!("media-key-of-notification-{i:04}-0123456789abcdef").into_bytes()
}

async fn exercise(s: &impl PendingHistoryStore) {
    assert_eq!(
        s.queue_history("A", &notification(0)).await.unwrap(),
        Queued::New
    );
    assert_eq!(
        s.queue_history("B", &notification(1)).await.unwrap(),
        Queued::New
    );
    // A redelivery of A (its Signal advance never committed): kept once, as it was.
    assert_eq!(
        s.queue_history("A", &notification(9)).await.unwrap(),
        Queued::Known
    );
    let first = s.next_history(0).await.unwrap().expect("A");
    assert_eq!(first.id, "A");
    assert_eq!(&first.notification[..], &notification(0)[..]);
    assert_eq!(first.attempts, 0);
    let second = s.next_history(first.seq).await.unwrap().expect("B");
    assert_eq!(second.id, "B");
    assert!(second.seq > first.seq, "arrival order");
    assert!(s.next_history(second.seq).await.unwrap().is_none());
    // Starts are counted.
    assert_eq!(s.history_attempt("A").await.unwrap(), 1);
    assert_eq!(s.history_attempt("A").await.unwrap(), 2);
    assert_eq!(s.next_history(0).await.unwrap().unwrap().attempts, 2);
    assert_eq!(s.history_attempt("nope").await.unwrap(), 0);
    // A stored: no longer to process, its receipt due; B still first in line after it.
    s.history_stored("A").await.unwrap();
    assert_eq!(s.next_history(0).await.unwrap().unwrap().id, "B");
    assert_eq!(s.history_receipts_due().await.unwrap(), ["A"]);
    // A redelivered now is still known (not processed twice).
    assert_eq!(
        s.queue_history("A", &notification(0)).await.unwrap(),
        Queued::Known
    );
    s.forget_history("A").await.unwrap();
    assert!(s.history_receipts_due().await.unwrap().is_empty());
    // The cap: B plus MAX - 1 more fit, the next is refused, a known one is still known.
    for i in 1..MAX_PENDING_HISTORY {
        assert_eq!(
            s.queue_history(&format!("C{i}"), &notification(i))
                .await
                .unwrap(),
            Queued::New
        );
    }
    assert_eq!(
        s.queue_history("D", &notification(0)).await.unwrap(),
        Queued::Full
    );
    assert_eq!(
        s.queue_history("B", &notification(1)).await.unwrap(),
        Queued::Known
    );
    // Room again once one goes.
    s.forget_history("B").await.unwrap();
    assert_eq!(
        s.queue_history("D", &notification(0)).await.unwrap(),
        Queued::New
    );
}

#[tokio::test]
async fn kept_history_notifications_are_once_per_id_in_order_capped_and_receipted() {
    exercise(&MemoryCreds::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let creds = store.creds(store.account("sub", "agent").await.unwrap());
    exercise(&creds).await;
    // Another account's queue is its own.
    let other = store.creds(store.account("sub", "other").await.unwrap());
    assert!(other.next_history(0).await.unwrap().is_none());
    assert_eq!(
        other.queue_history("A", &notification(0)).await.unwrap(),
        Queued::New
    );
    // Logged out: the kept notifications go with the keys.
    creds.wipe().await.unwrap();
    assert!(creds.next_history(0).await.unwrap().is_none());
    assert!(other.next_history(0).await.unwrap().is_some());
}

#[tokio::test]
async fn a_kept_history_notification_is_sealed_under_a_store_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let key = StoreKey::generate();
    let store = Store::open_with(&url, Some(&key)).await.unwrap();
    let creds = store.creds(store.account("sub", "agent").await.unwrap());
    creds.queue_history("A", &notification(7)).await.unwrap();
    assert_eq!(
        &creds.next_history(0).await.unwrap().unwrap().notification[..],
        &notification(7)[..],
        "opens with its key"
    );
    store.close().await;
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if let Ok(b) = std::fs::read(e.path()) {
            bytes.extend(b);
        }
    }
    let secret = notification(7);
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret),
        "the notification is not in the file"
    );
    assert!(
        bytes
            .windows(b"pending_history".len())
            .any(|w| w == b"pending_history"),
        "the table is (the search works)"
    );
}
