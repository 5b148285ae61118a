//! The SQLite Signal store: one database for many accounts, sessions that survive a reopen,
//! concurrent use under per-address locks.

use std::sync::Arc;

use wa_gateway::signal::store::{PreKeyStore, SessionStore, SignedPreKeyStore};
use wa_gateway::signal::{
    EncType, IdentityTrust, KeyPair, LocalIdentity, PreKey, PreKeyBundle, ProtocolAddress,
    SessionCipher, SignedPreKey,
};
use wa_gateway::store::{SqliteSignalStore, Store};

use crate::signal_roundtrip::kind;

async fn account(store: &Store, agent: &str) -> (SqliteSignalStore, LocalIdentity) {
    let id = store.account("sub-1", agent).await.unwrap();
    let s = store.signal(id);
    let identity = LocalIdentity {
        key_pair: KeyPair::generate(),
        registration_id: 4242,
    };
    s.set_local_identity(&identity).await.unwrap();
    (s, identity)
}

async fn bundle_for(s: &SqliteSignalStore, identity: &LocalIdentity) -> PreKeyBundle {
    let signed = SignedPreKey::generate(1, &identity.key_pair, 0);
    s.store_signed_pre_key(&signed).await.unwrap();
    let pk = PreKey {
        id: 9,
        key_pair: KeyPair::generate(),
    };
    s.store_pre_keys(std::slice::from_ref(&pk)).await.unwrap();
    PreKeyBundle {
        registration_id: identity.registration_id,
        pre_key: Some((pk.id, pk.key_pair.public)),
        signed_pre_key_id: 1,
        signed_pre_key: signed.key_pair.public,
        signed_pre_key_signature: signed.signature,
        identity_key: identity.key_pair.public,
    }
}

#[tokio::test]
async fn sessions_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let a_addr = ProtocolAddress::new("15550000001", 1);
    let b_addr = ProtocolAddress::new("15550000002", 3);
    {
        let store = Store::open(&url).await.unwrap();
        let (a, _) = account(&store, "alice").await;
        let (b, b_id) = account(&store, "bob").await;
        let bundle = bundle_for(&b, &b_id).await;
        assert_eq!(b.pre_key_count().await.unwrap(), 1);
        let alice = SessionCipher::new(a, IdentityTrust::AcceptChanges);
        let bob = SessionCipher::new(b.clone(), IdentityTrust::AcceptChanges);
        alice.process_bundle(&b_addr, &bundle).await.unwrap();
        let m = alice.encrypt(&b_addr, b"before").await.unwrap();
        assert_eq!(
            bob.decrypt(&a_addr, kind(&m), m.bytes())
                .await
                .unwrap()
                .plaintext,
            b"before"
        );
        // The one-time prekey was consumed.
        assert_eq!(b.pre_key_count().await.unwrap(), 0);
        let r = bob.encrypt(&a_addr, b"reply").await.unwrap();
        assert_eq!(
            alice
                .decrypt(&b_addr, kind(&r), r.bytes())
                .await
                .unwrap()
                .plaintext,
            b"reply"
        );
        store.close().await;
    }
    let store = Store::open(&url).await.unwrap();
    let a = store.signal(store.account("sub-1", "alice").await.unwrap());
    let b = store.signal(store.account("sub-1", "bob").await.unwrap());
    // Tenants never see each other's rows: Bob's store has no session for Bob's own address.
    assert!(b.session(&b_addr).await.unwrap().is_none());
    assert!(a.session(&b_addr).await.unwrap().is_some());
    let alice = SessionCipher::new(a, IdentityTrust::AcceptChanges);
    let bob = SessionCipher::new(b, IdentityTrust::AcceptChanges);
    let m = alice.encrypt(&b_addr, b"after reopen").await.unwrap();
    assert_eq!(kind(&m), EncType::Whisper);
    assert_eq!(
        bob.decrypt(&a_addr, kind(&m), m.bytes())
            .await
            .unwrap()
            .plaintext,
        b"after reopen"
    );
    let r = bob.encrypt(&a_addr, b"and back").await.unwrap();
    assert_eq!(
        alice
            .decrypt(&b_addr, kind(&r), r.bytes())
            .await
            .unwrap()
            .plaintext,
        b"and back"
    );
}

#[tokio::test]
async fn concurrent_sends_to_one_device_never_race_the_ratchet() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
        .await
        .unwrap();
    let (a, _) = account(&store, "alice").await;
    let (b, b_id) = account(&store, "bob").await;
    let a_addr = ProtocolAddress::new("15550000001", 1);
    let b_addr = ProtocolAddress::new("15550000002", 3);
    let bundle = bundle_for(&b, &b_id).await;
    let alice = Arc::new(SessionCipher::new(a, IdentityTrust::AcceptChanges));
    let bob = SessionCipher::new(b, IdentityTrust::AcceptChanges);
    alice.process_bundle(&b_addr, &bundle).await.unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let alice = alice.clone();
            let b_addr = b_addr.clone();
            tokio::spawn(async move {
                (
                    i,
                    alice
                        .encrypt(&b_addr, format!("m{i}").as_bytes())
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    // Every message got its own chain index, so all 50 decrypt, in any order.
    out.reverse();
    for (i, ct) in out {
        assert_eq!(
            bob.decrypt(&a_addr, kind(&ct), ct.bytes())
                .await
                .unwrap()
                .plaintext,
            format!("m{i}").as_bytes()
        );
    }
}

#[tokio::test]
async fn prekey_ids_only_grow_even_when_the_highest_is_consumed() {
    use wa_gateway::client::{Creds, CredsStore, MemoryCreds};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
        .await
        .unwrap();
    let sqlite = store.creds(store.account("sub-1", "ids").await.unwrap());
    let memory = MemoryCreds::default();
    async fn check<C: CredsStore>(c: &C) {
        c.save(&Creds::generate(0)).await.unwrap();
        let s = c.signal();
        assert_eq!(s.pre_keys_allocated().await.unwrap(), 0);
        let keys = s.create_pre_keys(3).await.unwrap();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(s.pre_keys_allocated().await.unwrap(), 3);
        // Stored with the counter: each key is there.
        for k in &keys {
            assert_eq!(
                s.pre_key(k.id).await.unwrap().unwrap().key_pair.public,
                k.key_pair.public
            );
        }
        // A peer's first message consumes the newest key: its id is still not reused.
        s.remove_pre_key(3).await.unwrap();
        let next = s.create_pre_keys(1).await.unwrap();
        assert_eq!(next[0].id, 4);
        // Logged out: the next device starts its own sequence.
        c.wipe().await.unwrap();
        c.save(&Creds::generate(0)).await.unwrap();
        assert_eq!(c.signal().pre_keys_allocated().await.unwrap(), 0);
        assert_eq!(c.signal().create_pre_keys(1).await.unwrap()[0].id, 1);
    }
    check(&sqlite).await;
    check(&memory).await;
}

#[test]
fn prekey_ids_wrap_at_24_bits_and_skip_live_keys() {
    use wa_gateway::signal::store::{MAX_PRE_KEY_ID, allocate_pre_key_ids, pre_key_id};
    assert_eq!(pre_key_id(0), 1, "a zero counter does not underflow");
    assert_eq!(pre_key_id(1), 1);
    assert_eq!(pre_key_id(u64::from(MAX_PRE_KEY_ID)), MAX_PRE_KEY_ID);
    assert_eq!(pre_key_id(u64::from(MAX_PRE_KEY_ID) + 1), 1);
    // Past the wrap, ids 1 and 3 are still live: they are skipped, never overwritten.
    let live = [1u32, 3];
    let start = u64::from(MAX_PRE_KEY_ID) - 1;
    let (ids, next) = allocate_pre_key_ids(start, 4, |id| live.contains(&id));
    assert_eq!(ids, [MAX_PRE_KEY_ID - 1, MAX_PRE_KEY_ID, 2, 4]);
    assert_eq!(pre_key_id(next), 5);
    // Every id live: the scan ends with what it found instead of looping.
    let (ids, _) = allocate_pre_key_ids(1, 2, |_| true);
    assert!(ids.is_empty());
}

#[tokio::test]
async fn sqlite_refill_after_the_wrap_keeps_live_keys() {
    use wa_gateway::signal::store::MAX_PRE_KEY_ID;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
        .await
        .unwrap();
    let (s, _) = account(&store, "wrap").await;
    let live = s.create_pre_keys(2).await.unwrap();
    assert_eq!(live.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
    // Millions of keys later (the counter is set as if they had been allocated).
    sqlx::query("UPDATE accounts SET next_pre_key_id = ? WHERE id = ?")
        .bind(i64::from(MAX_PRE_KEY_ID))
        .bind(s.account())
        .execute(store.pool())
        .await
        .unwrap();
    let refill = s.create_pre_keys(3).await.unwrap();
    assert_eq!(
        refill.iter().map(|k| k.id).collect::<Vec<_>>(),
        [MAX_PRE_KEY_ID, 3, 4]
    );
    for k in &live {
        assert_eq!(
            s.pre_key(k.id).await.unwrap().unwrap().key_pair.public,
            k.key_pair.public,
            "live key {} was overwritten",
            k.id
        );
    }
}

#[tokio::test]
async fn group_messages_through_sqlite_reuse_prepared_keys() {
    use wa_gateway::signal::SenderKeyName;
    let store = Store::open("sqlite::memory:").await.unwrap();
    let (a, _) = account(&store, "alice").await;
    let (b, _) = account(&store, "bob").await;
    let alice = SessionCipher::new(a, IdentityTrust::AcceptChanges);
    let bob = SessionCipher::new(b, IdentityTrust::AcceptChanges);
    let name = SenderKeyName {
        group: "120363041234567890@g.us".into(),
        sender: ProtocolAddress::new("15550000001", 1),
    };
    let skdm = alice.group_distribution(&name).await.unwrap();
    bob.process_group_distribution(&name, &skdm).await.unwrap();
    for i in 0..5 {
        let ct = alice
            .group_encrypt(&name, format!("g{i}").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            bob.group_decrypt(&name, &ct).await.unwrap(),
            format!("g{i}").into_bytes()
        );
    }
    // One prepared signer for Alice's one sending key, one verifier on Bob's side: records are
    // parsed from SQLite every time, the prepared keys come from the cipher.
    assert_eq!(alice.prepared_keys(), (1, 0));
    assert_eq!(bob.prepared_keys(), (0, 1));
    // A second cipher over the same store (a restart) reads what the first wrote.
    let (b2, _) = (
        store.signal(store.account("sub-1", "bob").await.unwrap()),
        (),
    );
    let bob2 = SessionCipher::new(b2, IdentityTrust::AcceptChanges);
    let ct = alice.group_encrypt(&name, b"after restart").await.unwrap();
    assert_eq!(
        bob2.group_decrypt(&name, &ct).await.unwrap(),
        b"after restart"
    );
    // A forged signature still fails with a prepared verifier.
    let mut bad = alice.group_encrypt(&name, b"x").await.unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(bob.group_decrypt(&name, &bad).await.is_err());
}
