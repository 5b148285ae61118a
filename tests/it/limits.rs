//! Reach-out limits and privacy tokens: the NCT salt's storage rule, the cstoken on the wire
//! (what the simulator received), tctoken issuance across buckets, the simulator's
//! `require_cstoken` refusal, capping state over REST and the outbox's cold-send gate.

use wa_gateway::client::{CredsStore, MemoryCreds};
use wa_gateway::store::Store;

/// The backfill-only rule (CLIENT-FEATURES §1.1, whatsapp-rust): a history salt applies only
/// with no salt stored and no `nct_salt_sync` ever seen.
async fn salt_rule<S: CredsStore>(fresh: impl Fn() -> S) {
    // Backfill into nothing applies, and a second history salt does not overwrite it.
    let s = fresh();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(s.backfill_nct_salt(b"history-1").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"history-1");
    assert!(!s.backfill_nct_salt(b"history-2").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"history-1");
    // A synced SET replaces it; history never overwrites the synced value.
    s.set_nct_salt(Some(b"synced")).await.unwrap();
    assert!(!s.backfill_nct_salt(b"history-3").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"synced");
    // A REMOVE clears it, and history does not resurrect it.
    s.set_nct_salt(None).await.unwrap();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(!s.backfill_nct_salt(b"history-4").await.unwrap());
    assert!(s.nct_salt().await.unwrap().is_none());
    // An empty history salt is nothing.
    let t = fresh();
    assert!(!t.backfill_nct_salt(b"").await.unwrap());
    assert!(t.nct_salt().await.unwrap().is_none());
    // A logout wipe forgets the salt and the seen flag: the next link backfills again.
    s.set_nct_salt(Some(b"synced")).await.unwrap();
    s.wipe().await.unwrap();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(s.backfill_nct_salt(b"history-5").await.unwrap());
    // Debug never shows it.
    let shown = format!("{:?}", s.nct_salt().await.unwrap());
    assert!(
        !shown.contains("history") && !shown.contains("104"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_history_salt_is_backfill_only_in_memory_and_in_sqlite() {
    salt_rule(MemoryCreds::default).await;
    let store = Store::open("sqlite::memory:").await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..4 {
        let id = store.account("sub", &format!("salt-{i}")).await.unwrap();
        accounts.push(store.creds(id));
    }
    let accounts = std::sync::Mutex::new(accounts);
    salt_rule(|| accounts.lock().unwrap().pop().unwrap()).await;
}
