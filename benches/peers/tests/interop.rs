//! Interoperability with an independent Signal implementation, wacore-libsignal (whatsapp-rust):
//! 1:1 sessions started by either side, and sender keys distributed by either side, must
//! decrypt on the other, through each side's own store API — ours over the SQLite store the
//! product runs, theirs over its in-memory stores.

use wa_gateway::signal::store::{PreKeyStore, SignedPreKeyStore};
use wa_gateway::signal::{
    EncType, IdentityTrust, KeyPair, LocalIdentity, PreKeyBundle as OurBundle,
    ProtocolAddress as OurAddress, SenderKeyName as OurName, SessionCipher, SignedPreKey,
};
use wa_gateway_peers::theirs;
use wacore_libsignal::protocol as w;
use wacore_libsignal::protocol::GenericSignedPreKey;

const GROUP: &str = "120363041234567890@g.us";

/// Our party: a cipher over our SQLite store (in memory), with prekeys published.
struct Ours {
    cipher: SessionCipher<wa_gateway::store::SqliteSignalStore>,
    identity: LocalIdentity,
    signed: SignedPreKey,
    one_time: (u32, [u8; 32]),
    _store: wa_gateway::store::Store,
}

async fn ours() -> Ours {
    let store = wa_gateway::store::Store::open("sqlite::memory:")
        .await
        .unwrap();
    let account = store.account("sub", "agent").await.unwrap();
    let signal = store.signal(account);
    let identity = LocalIdentity {
        key_pair: KeyPair::generate(),
        registration_id: 4321,
    };
    signal.set_local_identity(&identity).await.unwrap();
    let signed = SignedPreKey::generate(1, &identity.key_pair, 0);
    signal.store_signed_pre_key(&signed).await.unwrap();
    let pk = signal.create_pre_keys(1).await.unwrap().remove(0);
    Ours {
        cipher: SessionCipher::new(signal, IdentityTrust::AcceptChanges),
        identity,
        signed,
        one_time: (pk.id, pk.key_pair.public),
        _store: store,
    }
}

fn their_store() -> theirs::Store {
    theirs::Store {
        id: Some(w::IdentityKeyPair::generate(&mut theirs::rng())),
        ..Default::default()
    }
}

fn djb(k: &w::PublicKey) -> [u8; 32] {
    k.public_key_bytes().try_into().unwrap()
}

fn their_public(k: &[u8; 32]) -> w::PublicKey {
    w::PublicKey::from_djb_public_key_bytes(k).unwrap()
}

/// Their published keys as our bundle (what a prekey fetch would give us).
fn their_bundle(t: &mut theirs::Store) -> OurBundle {
    let mut r = theirs::rng();
    let id = t.id.clone().unwrap();
    let signed = w::KeyPair::generate(&mut r);
    let sig = id
        .private_key()
        .calculate_signature(&signed.public_key.serialize(), &mut r)
        .unwrap();
    t.signed.insert(
        1,
        w::SignedPreKeyRecord::new(1.into(), w::Timestamp::from_epoch_millis(0), &signed, &sig),
    );
    let pk = w::KeyPair::generate(&mut r);
    t.pre_keys.insert(9, w::PreKeyRecord::new(9.into(), &pk));
    OurBundle {
        registration_id: 77,
        pre_key: Some((9, djb(&pk.public_key))),
        signed_pre_key_id: 1,
        signed_pre_key: djb(&signed.public_key),
        signed_pre_key_signature: sig.as_ref().try_into().unwrap(),
        identity_key: djb(id.identity_key().public_key()),
    }
}

/// Our published keys as their bundle.
fn our_bundle(o: &Ours) -> w::PreKeyBundle {
    w::PreKeyBundle::new(
        o.identity.registration_id,
        w::DeviceId::from(1),
        Some((o.one_time.0.into(), their_public(&o.one_time.1))),
        o.signed.id.into(),
        their_public(&o.signed.key_pair.public),
        o.signed.signature.to_vec(),
        w::IdentityKey::new(their_public(&o.identity.key_pair.public)),
    )
    .unwrap()
}

fn our_kind(ct: &w::CiphertextMessage) -> EncType {
    match ct.message_type() {
        w::CiphertextMessageType::PreKey => EncType::PreKey,
        w::CiphertextMessageType::Whisper => EncType::Whisper,
        other => panic!("unexpected {other:?}"),
    }
}

fn their_ct(kind: &str, bytes: &[u8]) -> w::CiphertextMessage {
    match kind {
        "pkmsg" => w::CiphertextMessage::PreKeySignalMessage(
            w::PreKeySignalMessage::try_from(bytes).unwrap(),
        ),
        _ => w::CiphertextMessage::SignalMessage(w::SignalMessage::try_from(bytes).unwrap()),
    }
}

#[tokio::test]
async fn we_start_a_session_they_answer_and_both_keep_talking() {
    let o = ours().await;
    let mut t = their_store();
    let bundle = their_bundle(&mut t);
    let them = OurAddress::new("peer", 1);
    let us = w::ProtocolAddress::new("us", w::DeviceId::from(1));
    o.cipher.process_bundle(&them, &bundle).await.unwrap();
    // Several messages before any answer (all pkmsg), one lost, then answers and more.
    let mut sent = Vec::new();
    for i in 0..3 {
        let text = format!("hello {i} ✓");
        sent.push((
            o.cipher.encrypt(&them, text.as_bytes()).await.unwrap(),
            text,
        ));
    }
    for (i, (ct, text)) in sent.iter().enumerate() {
        assert_eq!(ct.enc_type(), "pkmsg");
        if i == 1 {
            continue;
        }
        let plain = theirs::decrypt(&mut t, &us, &their_ct(ct.enc_type(), ct.bytes())).await;
        assert_eq!(plain, text.as_bytes(), "they read our message {i}");
    }
    for round in 0..4 {
        let text = format!("reply {round}");
        let ct = theirs::encrypt_bytes(&mut t, &us, text.as_bytes()).await;
        let got = o
            .cipher
            .decrypt(&them, our_kind(&ct), ct.serialize())
            .await
            .unwrap();
        assert_eq!(got.plaintext, text.as_bytes());
        let back = format!("ack {round}");
        let ct = o.cipher.encrypt(&them, back.as_bytes()).await.unwrap();
        assert_eq!(ct.enc_type(), "msg", "session acknowledged");
        let plain = theirs::decrypt(&mut t, &us, &their_ct(ct.enc_type(), ct.bytes())).await;
        assert_eq!(plain, back.as_bytes());
    }
}

#[tokio::test]
async fn they_start_a_session_we_answer_and_both_keep_talking() {
    let o = ours().await;
    let mut t = their_store();
    let us = w::ProtocolAddress::new("us", w::DeviceId::from(1));
    let them = OurAddress::new("peer", 1);
    let mut ids = theirs::Store {
        id: t.id.clone(),
        ..Default::default()
    };
    w::process_prekey_bundle(
        &us,
        &mut t,
        &mut ids,
        &our_bundle(&o),
        &mut theirs::rng(),
        w::UsePQRatchet::No,
    )
    .await
    .unwrap();
    t.identities = ids.identities;
    let first = theirs::encrypt_bytes(&mut t, &us, b"first").await;
    assert_eq!(our_kind(&first), EncType::PreKey);
    let got = o
        .cipher
        .decrypt(&them, EncType::PreKey, first.serialize())
        .await
        .unwrap();
    assert_eq!(got.plaintext, b"first");
    let signal = o.cipher.store();
    assert!(
        signal.pre_key(o.one_time.0).await.unwrap().is_none(),
        "our one-time prekey was consumed"
    );
    // Out of order on their side: the second arrives after the third.
    let second = theirs::encrypt_bytes(&mut t, &us, b"second").await;
    let third = theirs::encrypt_bytes(&mut t, &us, b"third").await;
    for (ct, text) in [(&third, &b"third"[..]), (&second, &b"second"[..])] {
        let got = o
            .cipher
            .decrypt(&them, our_kind(ct), ct.serialize())
            .await
            .unwrap();
        assert_eq!(got.plaintext, text);
    }
    let answer = o.cipher.encrypt(&them, b"answer").await.unwrap();
    let plain = theirs::decrypt(&mut t, &us, &their_ct(answer.enc_type(), answer.bytes())).await;
    assert_eq!(plain, b"answer");
    let more = theirs::encrypt_bytes(&mut t, &us, b"after the ratchet").await;
    assert_eq!(our_kind(&more), EncType::Whisper);
    let got = o
        .cipher
        .decrypt(&them, EncType::Whisper, more.serialize())
        .await
        .unwrap();
    assert_eq!(got.plaintext, b"after the ratchet");
}

#[tokio::test]
async fn sender_keys_distributed_by_either_side_decrypt_on_the_other() {
    let o = ours().await;
    let mut t = their_store();
    // Ours → theirs: our distribution message and group messages, read by wacore.
    let our_name = OurName {
        group: GROUP.into(),
        sender: OurAddress::new("us", 1),
    };
    let their_view = w::SenderKeyName::new(GROUP.into(), "us.1".into());
    let skdm = o.cipher.group_distribution(&our_name).await.unwrap();
    let skdm = w::SenderKeyDistributionMessage::try_from(&skdm[..]).unwrap();
    w::process_sender_key_distribution_message(&their_view, &skdm, &mut t)
        .await
        .unwrap();
    let mut cts = Vec::new();
    for i in 0..5 {
        cts.push((
            o.cipher
                .group_encrypt(&our_name, format!("g{i}").as_bytes())
                .await
                .unwrap(),
            i,
        ));
    }
    // Delivered out of order, one missing.
    for (ct, i) in [&cts[0], &cts[3], &cts[1], &cts[4]] {
        let plain = w::group_decrypt(ct, &mut t, &their_view).await.unwrap();
        assert_eq!(plain, format!("g{i}").into_bytes());
    }

    // Theirs → ours: wacore's distribution message and group messages, read by us.
    let their_name = w::SenderKeyName::new(GROUP.into(), "peer.1".into());
    let our_view = OurName {
        group: GROUP.into(),
        sender: OurAddress::new("peer", 1),
    };
    let skdm = w::create_sender_key_distribution_message(&their_name, &mut t, &mut theirs::rng())
        .await
        .unwrap();
    o.cipher
        .process_group_distribution(&our_view, skdm.serialized())
        .await
        .unwrap();
    let mut cts = Vec::new();
    for i in 0..5 {
        let m = w::group_encrypt(
            &mut t,
            &their_name,
            format!("t{i}").as_bytes(),
            &mut theirs::rng(),
        )
        .await
        .unwrap();
        cts.push((m.serialized().to_vec(), i));
    }
    for (ct, i) in [&cts[1], &cts[0], &cts[4], &cts[2]] {
        let plain = o.cipher.group_decrypt(&our_view, ct).await.unwrap();
        assert_eq!(plain, format!("t{i}").into_bytes());
    }
    // A replay is refused on our side, as on theirs.
    assert!(o.cipher.group_decrypt(&our_view, &cts[1].0).await.is_err());
}
