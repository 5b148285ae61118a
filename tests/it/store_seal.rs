//! Key material at rest: with a store key, a copy of the database file holds no private key or
//! session secret; opening it without the key, or with another key, is refused at once; a sealed
//! value moved to another row does not open. Without a key the same values are plain (which is
//! what shows the search below can find them).

use prost::Message;
use wa_gateway::client::{Creds, CredsStore};
use wa_gateway::proto::wa::signal::RecordStructure;
use wa_gateway::signal::store::{PreKeyStore, SessionStore};
use wa_gateway::signal::{ProtocolAddress, SessionRecord};
use wa_gateway::store::{Store, StoreError, StoreKey};

use crate::common::session_pair;

/// Bob's side of a real session.
fn session() -> SessionRecord {
    session_pair().1
}

/// Writes an account's creds, prekeys and a session; returns the secrets written.
async fn fill(store: &Store) -> Vec<Vec<u8>> {
    let account = store.account("sub-1", "agent-1").await.unwrap();
    let creds = store.creds(account);
    let c = Creds::generate(0);
    creds.save(&c).await.unwrap();
    let keys = creds.signal().create_pre_keys(3).await.unwrap();
    let record = session();
    creds
        .signal()
        .store_session(&ProtocolAddress::new("15550001111", 0), &record)
        .await
        .unwrap();
    creds
        .signal()
        .store_session(&ProtocolAddress::new("15550002222", 0), &session())
        .await
        .unwrap();
    let pb = RecordStructure::decode(&record.to_bytes()[..]).unwrap();
    let current = pb.current_session.unwrap();
    let mut secrets = vec![
        c.noise.private.to_vec(),
        c.identity.private.to_vec(),
        c.adv_secret.to_vec(),
        c.signed_pre_key.key_pair.private.to_vec(),
        current.root_key.unwrap(),
        current
            .sender_chain
            .unwrap()
            .sender_ratchet_key_private
            .unwrap(),
    ];
    secrets.extend(keys.iter().map(|k| k.key_pair.private.to_vec()));
    secrets
}

/// Every byte of the database's files (main file, and the WAL and shared-memory files while
/// they exist: the last connection to close removes them, possibly while this reads).
fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        match std::fs::read(e.path()) {
            Ok(b) => all.extend(b),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("{}: {err}", e.path().display()),
        }
    }
    all
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_sealed_database_holds_no_key_material_and_needs_its_key() {
    // Plain: the secrets are in the file (the search works).
    let plain_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", plain_dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    let secrets = fill(&store).await;
    store.close().await;
    let bytes = file_bytes(plain_dir.path());
    assert!(
        secrets.iter().all(|s| holds(&bytes, s)),
        "plain store holds its keys"
    );

    // Sealed: none of them.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let key = StoreKey::generate();
    let store = Store::open_with(&url, Some(&key)).await.unwrap();
    let secrets = fill(&store).await;
    store.close().await;
    let bytes = file_bytes(dir.path());
    for s in &secrets {
        assert!(
            !holds(&bytes, s),
            "a secret is readable in the sealed database"
        );
    }

    // Without the key, or with another: refused at open, with an error that says why.
    assert!(matches!(Store::open(&url).await, Err(StoreError::Sealed)));
    let other = StoreKey::generate();
    assert!(matches!(
        Store::open_with(&url, Some(&other)).await,
        Err(StoreError::WrongKey)
    ));
    assert!(
        StoreError::Sealed
            .to_string()
            .contains("WA_GATEWAY_STORE_KEY")
    );

    // With it, everything reads back.
    let store = Store::open_with(&url, Some(&key)).await.unwrap();
    let account = store.account("sub-1", "agent-1").await.unwrap();
    let creds = store.creds(account);
    let c = creds.load().await.unwrap().expect("creds");
    assert!(secrets.contains(&c.noise.private.to_vec()));
    assert!(secrets.contains(&c.adv_secret.to_vec()));
    let signal = creds.signal();
    assert!(signal.pre_key(1).await.unwrap().is_some());
    let a = ProtocolAddress::new("15550001111", 0);
    let b = ProtocolAddress::new("15550002222", 0);
    assert!(signal.session(&a).await.unwrap().is_some());

    // A sealed record copied onto another row does not open there.
    sqlx::query(
        "UPDATE signal_sessions SET record = (SELECT record FROM signal_sessions WHERE address = ?) \
         WHERE address = ?",
    )
    .bind(a.to_string())
    .bind(b.to_string())
    .execute(store.pool())
    .await
    .unwrap();
    let err = signal.session(&b).await.unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");
    store.close().await;
}

#[tokio::test]
async fn turning_sealing_on_keeps_existing_plain_rows_readable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let store = Store::open(&url).await.unwrap();
    fill(&store).await;
    store.close().await;
    let key = StoreKey::generate();
    let store = Store::open_with(&url, Some(&key)).await.unwrap();
    let account = store.account("sub-1", "agent-1").await.unwrap();
    let creds = store.creds(account);
    let c = creds.load().await.unwrap().expect("plain creds still read");
    // Written again, they are sealed: after the next checkpoint the noise key has left the
    // files (secure_delete zeroes the old cell).
    creds.save(&c).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    assert!(!holds(&file_bytes(dir.path()), &c.noise.private));
    // And from now on the key is required.
    assert!(matches!(Store::open(&url).await, Err(StoreError::Sealed)));
}
