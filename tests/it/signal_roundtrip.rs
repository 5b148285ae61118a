//! Our Signal implementation against itself, through the store-backed cipher: long interleaved
//! conversations, out-of-order and duplicate delivery, the skip bound, session restarts, groups.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use wa_gateway::signal::store::{PreKeyStore, SignedPreKeyStore};
use wa_gateway::signal::{
    CiphertextMessage, EncType, IdentityChange, IdentityTrust, KeyPair, LocalIdentity, MemoryStore,
    PreKey, PreKeyBundle, ProtocolAddress, SenderKeyName, SessionCipher, SignalError, SignedPreKey,
};

pub struct Peer {
    pub cipher: SessionCipher<MemoryStore>,
    pub addr: ProtocolAddress,
    pub identity: LocalIdentity,
    signed: SignedPreKey,
    next_pre_key: u32,
}

impl Peer {
    pub async fn new(name: &str, device: u32) -> Peer {
        let identity = LocalIdentity {
            key_pair: KeyPair::generate(),
            registration_id: rand::rng().random_range(1..16380),
        };
        let store = MemoryStore::new(identity.clone());
        let signed = SignedPreKey::generate(1, &identity.key_pair, 0);
        store.store_signed_pre_key(&signed).await.unwrap();
        Peer {
            cipher: SessionCipher::new(store, IdentityTrust::AcceptChanges),
            addr: ProtocolAddress::new(name, device),
            identity,
            signed,
            next_pre_key: 1,
        }
    }

    /// A bundle as the server would hand it out (consuming a fresh one-time prekey).
    pub async fn bundle(&mut self) -> PreKeyBundle {
        let pk = PreKey {
            id: self.next_pre_key,
            key_pair: KeyPair::generate(),
        };
        self.next_pre_key += 1;
        self.cipher
            .store()
            .store_pre_keys(std::slice::from_ref(&pk))
            .await
            .unwrap();
        PreKeyBundle {
            registration_id: self.identity.registration_id,
            pre_key: Some((pk.id, pk.key_pair.public)),
            signed_pre_key_id: self.signed.id,
            signed_pre_key: self.signed.key_pair.public,
            signed_pre_key_signature: self.signed.signature,
            identity_key: self.identity.key_pair.public,
        }
    }
}

pub fn kind(ct: &CiphertextMessage) -> EncType {
    match ct {
        CiphertextMessage::PreKey(_) => EncType::PreKey,
        CiphertextMessage::Whisper(_) => EncType::Whisper,
    }
}

async fn connected() -> (Peer, Peer) {
    let alice = Peer::new("alice", 1).await;
    let mut bob = Peer::new("bob", 2).await;
    let bundle = bob.bundle().await;
    assert_eq!(
        alice
            .cipher
            .process_bundle(&bob.addr, &bundle)
            .await
            .unwrap(),
        IdentityChange::New
    );
    (alice, bob)
}

#[tokio::test]
async fn a_thousand_messages_each_way_interleaved_and_reordered() {
    let (alice, bob) = connected().await;
    let mut rng = StdRng::seed_from_u64(7);
    // In-flight queues per direction; each delivery takes one of the three oldest messages, so
    // order is shuffled within a chain but no message outlives the 5 receiving chains a
    // session keeps (as in libsignal).
    let mut to_bob: Vec<(usize, CiphertextMessage)> = Vec::new();
    let mut to_alice: Vec<(usize, CiphertextMessage)> = Vec::new();
    let (mut sent_a, mut sent_b, mut got_a, mut got_b) = (0usize, 0usize, 0usize, 0usize);
    // Bob must hear from Alice once before he has a session.
    let first = alice.cipher.encrypt(&bob.addr, b"a0").await.unwrap();
    bob.cipher
        .decrypt(&alice.addr, kind(&first), first.bytes())
        .await
        .unwrap();
    sent_a += 1;
    got_b += 1;
    while got_a < 1000 || got_b < 1000 {
        match rng.random_range(0..4) {
            0 if sent_a < 1000 => {
                let ct = alice
                    .cipher
                    .encrypt(&bob.addr, format!("a{sent_a}").as_bytes())
                    .await
                    .unwrap();
                to_bob.push((sent_a, ct));
                sent_a += 1;
            }
            1 if sent_b < 1000 => {
                let ct = bob
                    .cipher
                    .encrypt(&alice.addr, format!("b{sent_b}").as_bytes())
                    .await
                    .unwrap();
                to_alice.push((sent_b, ct));
                sent_b += 1;
            }
            2 if !to_bob.is_empty() && (to_bob.len() > 5 || sent_a == 1000) => {
                let pick = rng.random_range(0..to_bob.len().min(3));
                let (i, ct) = to_bob.remove(pick);
                let d = bob
                    .cipher
                    .decrypt(&alice.addr, kind(&ct), ct.bytes())
                    .await
                    .unwrap();
                assert_eq!(d.plaintext, format!("a{i}").as_bytes());
                got_b += 1;
            }
            3 if !to_alice.is_empty() && (to_alice.len() > 5 || sent_b == 1000) => {
                let pick = rng.random_range(0..to_alice.len().min(3));
                let (i, ct) = to_alice.remove(pick);
                let d = alice
                    .cipher
                    .decrypt(&bob.addr, kind(&ct), ct.bytes())
                    .await
                    .unwrap();
                assert_eq!(d.plaintext, format!("b{i}").as_bytes());
                got_a += 1;
            }
            _ => {}
        }
    }
    assert_eq!((sent_a, sent_b), (1000, 1000));
}

#[tokio::test]
async fn duplicates_and_the_skip_bound() {
    let (alice, bob) = connected().await;
    let first = alice.cipher.encrypt(&bob.addr, b"hello").await.unwrap();
    bob.cipher
        .decrypt(&alice.addr, kind(&first), first.bytes())
        .await
        .unwrap();
    // The same pkmsg again: the agreement is known, the message key is used.
    let err = bob
        .cipher
        .decrypt(&alice.addr, kind(&first), first.bytes())
        .await
        .unwrap_err();
    assert_eq!(err, SignalError::DuplicateMessage { counter: 0 });

    let reply = bob.cipher.encrypt(&alice.addr, b"hi").await.unwrap();
    alice
        .cipher
        .decrypt(&bob.addr, kind(&reply), reply.bytes())
        .await
        .unwrap();

    // 2,002 messages: the last one is 2,001 ahead of Bob's chain, beyond the bound.
    let mut cts = Vec::new();
    for i in 0..2002 {
        cts.push(
            alice
                .cipher
                .encrypt(&bob.addr, format!("m{i}").as_bytes())
                .await
                .unwrap(),
        );
    }
    let last = cts.last().unwrap();
    let err = bob
        .cipher
        .decrypt(&alice.addr, kind(last), last.bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SignalError::TooFarAhead {
                counter: 2001,
                limit: 2000
            }
        ),
        "{err}"
    );
    // Within the bound, out of order: message 2000 first, then 0, then 1999.
    for i in [2000usize, 0, 1999, 5] {
        let d = bob
            .cipher
            .decrypt(&alice.addr, kind(&cts[i]), cts[i].bytes())
            .await
            .unwrap();
        assert_eq!(d.plaintext, format!("m{i}").as_bytes());
    }
    let err = bob
        .cipher
        .decrypt(&alice.addr, kind(&cts[5]), cts[5].bytes())
        .await
        .unwrap_err();
    assert_eq!(err, SignalError::DuplicateMessage { counter: 5 });
}

#[tokio::test]
async fn tampered_messages_fail_cleanly_and_change_nothing() {
    let (alice, bob) = connected().await;
    let first = alice.cipher.encrypt(&bob.addr, b"one").await.unwrap();
    bob.cipher
        .decrypt(&alice.addr, kind(&first), first.bytes())
        .await
        .unwrap();
    let reply = bob.cipher.encrypt(&alice.addr, b"ok").await.unwrap();
    alice
        .cipher
        .decrypt(&bob.addr, kind(&reply), reply.bytes())
        .await
        .unwrap();
    let ct = alice.cipher.encrypt(&bob.addr, b"two").await.unwrap();
    assert_eq!(kind(&ct), EncType::Whisper);
    let mut bad = ct.bytes().to_vec();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        bob.cipher
            .decrypt(&alice.addr, kind(&ct), &bad)
            .await
            .unwrap_err(),
        SignalError::InvalidMac
    );
    bad[n - 20] ^= 1;
    assert!(
        bob.cipher
            .decrypt(&alice.addr, kind(&ct), &bad)
            .await
            .is_err()
    );
    assert!(
        bob.cipher
            .decrypt(&alice.addr, EncType::Whisper, &[0x33, 1, 2])
            .await
            .is_err()
    );
    // The genuine message still decrypts: the failures left the session as it was.
    assert_eq!(
        bob.cipher
            .decrypt(&alice.addr, kind(&ct), ct.bytes())
            .await
            .unwrap()
            .plaintext,
        b"two"
    );
}

#[tokio::test]
async fn a_fresh_pkmsg_restarts_the_session_and_old_messages_still_decrypt() {
    let (alice, mut bob) = connected().await;
    let first = alice.cipher.encrypt(&bob.addr, b"old 0").await.unwrap();
    bob.cipher
        .decrypt(&alice.addr, kind(&first), first.bytes())
        .await
        .unwrap();
    let reply = bob.cipher.encrypt(&alice.addr, b"ack").await.unwrap();
    alice
        .cipher
        .decrypt(&bob.addr, kind(&reply), reply.bytes())
        .await
        .unwrap();
    let in_flight = alice.cipher.encrypt(&bob.addr, b"old 1").await.unwrap();

    // Alice "re-installs": a new session from a fresh bundle, new base key.
    let bundle = bob.bundle().await;
    alice
        .cipher
        .process_bundle(&bob.addr, &bundle)
        .await
        .unwrap();
    let fresh = alice.cipher.encrypt(&bob.addr, b"new 0").await.unwrap();
    assert_eq!(kind(&fresh), EncType::PreKey);
    assert_eq!(
        bob.cipher
            .decrypt(&alice.addr, kind(&fresh), fresh.bytes())
            .await
            .unwrap()
            .plaintext,
        b"new 0"
    );
    // The message from the old session, delivered late, still decrypts (archived state).
    assert_eq!(
        bob.cipher
            .decrypt(&alice.addr, kind(&in_flight), in_flight.bytes())
            .await
            .unwrap()
            .plaintext,
        b"old 1"
    );
    // And the conversation goes on.
    let r = bob
        .cipher
        .encrypt(&alice.addr, b"still here")
        .await
        .unwrap();
    assert_eq!(
        alice
            .cipher
            .decrypt(&bob.addr, kind(&r), r.bytes())
            .await
            .unwrap()
            .plaintext,
        b"still here"
    );
}

#[tokio::test]
async fn identity_changes_are_reported_or_refused() {
    let (alice, mut bob) = connected().await;
    let m = alice.cipher.encrypt(&bob.addr, b"x").await.unwrap();
    let d = bob
        .cipher
        .decrypt(&alice.addr, kind(&m), m.bytes())
        .await
        .unwrap();
    assert_eq!(d.identity, IdentityChange::New);

    // A different person under the same address.
    let mallory = Peer::new("alice", 1).await;
    let bundle = bob.bundle().await;
    mallory
        .cipher
        .process_bundle(&bob.addr, &bundle)
        .await
        .unwrap();
    let m = mallory.cipher.encrypt(&bob.addr, b"y").await.unwrap();
    let d = bob
        .cipher
        .decrypt(&alice.addr, kind(&m), m.bytes())
        .await
        .unwrap();
    assert_eq!(d.identity, IdentityChange::Changed);

    let strict = SessionCipher::new(
        MemoryStore::new(bob.identity.clone()),
        IdentityTrust::RejectChanges,
    );
    use wa_gateway::signal::store::IdentityStore;
    strict
        .store()
        .save_identity(&alice.addr, &alice.identity.key_pair.public)
        .await
        .unwrap();
    let err = strict
        .decrypt(&alice.addr, kind(&m), m.bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, SignalError::UntrustedIdentity(_)));
}

#[tokio::test]
async fn group_of_three_with_out_of_order_sender_key_messages() {
    let peers = [
        Peer::new("p0", 1).await,
        Peer::new("p1", 1).await,
        Peer::new("p2", 1).await,
    ];
    let group = "120363041234567890@g.us".to_string();
    let name = |p: &Peer| SenderKeyName {
        group: group.clone(),
        sender: p.addr.clone(),
    };
    // Each member distributes its sender key to the others (in real life inside pkmsg/msg).
    for s in &peers {
        let skdm = s.cipher.group_distribution(&name(s)).await.unwrap();
        for r in peers.iter().filter(|r| r.addr != s.addr) {
            r.cipher
                .process_group_distribution(&name(s), &skdm)
                .await
                .unwrap();
        }
    }
    let mut rng = StdRng::seed_from_u64(3);
    for s in &peers {
        let mut msgs = Vec::new();
        for i in 0..30 {
            msgs.push((
                i,
                s.cipher
                    .group_encrypt(&name(s), format!("{} says {i}", s.addr).as_bytes())
                    .await
                    .unwrap(),
            ));
        }
        for r in peers.iter().filter(|r| r.addr != s.addr) {
            let mut order = msgs.clone();
            order.shuffle(&mut rng);
            for (i, ct) in &order {
                let pt = r.cipher.group_decrypt(&name(s), ct).await.unwrap();
                assert_eq!(pt, format!("{} says {i}", s.addr).as_bytes());
            }
            let err = r
                .cipher
                .group_decrypt(&name(s), &order[0].1)
                .await
                .unwrap_err();
            assert!(matches!(err, SignalError::DuplicateMessage { .. }));
            let mut forged = order[1].1.clone();
            let n = forged.len();
            forged[n - 70] ^= 1;
            assert_eq!(
                r.cipher.group_decrypt(&name(s), &forged).await.unwrap_err(),
                SignalError::InvalidMac
            );
        }
    }
    // A later message reuses the same sender key.
    let s = &peers[0];
    let ct = s.cipher.group_encrypt(&name(s), b"later").await.unwrap();
    assert_eq!(
        peers[2].cipher.group_decrypt(&name(s), &ct).await.unwrap(),
        b"later"
    );
}
