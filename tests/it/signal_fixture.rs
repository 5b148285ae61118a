//! fixtures/signal_session.json, recorded from libsignal (JavaScript) 6.0.0 as Baileys uses it.
//! As Bob with Bob's keys we decrypt every Alice step; with the recorded key sequence injected we
//! play both sides and reproduce every ciphertext byte for byte.

use wa_gateway::signal::curve::{strip_type, with_type};
use wa_gateway::signal::{
    CiphertextMessage, KeyPair, LocalIdentity, PreKeyBundle, PreKeySignalMessage, SequenceKeys,
    SessionRecord, SignalMessage, initiate, xeddsa_verify,
};
use wa_gateway::util::hex;

use crate::common::{fixture, hexf};

fn pair(v: &serde_json::Value, priv_key: &str, pub_key: &str) -> KeyPair {
    let kp = KeyPair::from_private(hexf(v, priv_key).try_into().unwrap());
    assert_eq!(
        with_type(&kp.public).to_vec(),
        hexf(v, pub_key),
        "public key of {priv_key}"
    );
    kp
}

struct Bob {
    identity: LocalIdentity,
    signed: KeyPair,
    signed_id: u32,
    one_time: KeyPair,
    one_time_id: u32,
    signature: [u8; 64],
}

fn bob(f: &serde_json::Value) -> Bob {
    let b = &f["bob"];
    Bob {
        identity: LocalIdentity {
            key_pair: pair(b, "identity_private", "identity_public"),
            registration_id: b["registration_id"].as_u64().unwrap() as u32,
        },
        signed: pair(&b["signed_prekey"], "private", "public"),
        signed_id: b["signed_prekey"]["id"].as_u64().unwrap() as u32,
        one_time: pair(&b["one_time_prekey"], "private", "public"),
        one_time_id: b["one_time_prekey"]["id"].as_u64().unwrap() as u32,
        signature: hexf(&b["signed_prekey"], "signature").try_into().unwrap(),
    }
}

fn alice(f: &serde_json::Value) -> LocalIdentity {
    LocalIdentity {
        key_pair: pair(&f["alice"], "identity_private", "identity_public"),
        registration_id: f["alice"]["registration_id"].as_u64().unwrap() as u32,
    }
}

/// Bob's side of a received message.
fn bob_decrypt(
    bob: &Bob,
    record: &mut SessionRecord,
    kind: &str,
    ct: &[u8],
    keys: &mut dyn wa_gateway::signal::KeySource,
) -> Vec<u8> {
    match kind {
        "pkmsg" => {
            let m = PreKeySignalMessage::decode(ct).unwrap();
            assert_eq!(m.signed_pre_key_id, bob.signed_id);
            assert_eq!(m.pre_key_id, Some(bob.one_time_id));
            let first = !record.has_base_key(&m.base_key);
            let (plain, consumed) = record
                .decrypt_pre_key(
                    &m,
                    &bob.identity,
                    Some(&bob.signed),
                    Some(&bob.one_time),
                    keys,
                )
                .unwrap();
            // Only the first pkmsg of the agreement consumes the one-time prekey.
            assert_eq!(consumed, first.then_some(bob.one_time_id));
            plain
        }
        _ => record
            .decrypt(&SignalMessage::decode(ct).unwrap(), keys)
            .unwrap(),
    }
}

#[test]
fn recorded_signed_prekey_signature_verifies() {
    let f = fixture("signal_session.json");
    let b = bob(&f);
    assert!(xeddsa_verify(
        &b.identity.key_pair.public,
        &with_type(&b.signed.public),
        &b.signature
    ));
    let mut bad = b.signature;
    bad[0] ^= 1;
    assert!(!xeddsa_verify(
        &b.identity.key_pair.public,
        &with_type(&b.signed.public),
        &bad
    ));
}

#[test]
fn bob_decrypts_every_alice_step() {
    let f = fixture("signal_session.json");
    let b = bob(&f);
    // Bob's own generated ratchet keys, in order ("bob: decrypt step N").
    let mut bob_keys = SequenceKeys::new(
        f["key_pairs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["owner"].as_str().unwrap().starts_with("bob:"))
            .map(|k| pair(k, "private", "public")),
    );
    let mut record = SessionRecord::new();
    let mut seen = 0;
    for step in f["steps"].as_array().unwrap() {
        if step["from"] != "alice" {
            continue;
        }
        let plain = bob_decrypt(
            &b,
            &mut record,
            step["type"].as_str().unwrap(),
            &hexf(step, "ciphertext_hex"),
            &mut bob_keys,
        );
        assert_eq!(hex::encode(&plain), step["plaintext_hex"].as_str().unwrap());
        seen += 1;
    }
    let alice_steps = f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["from"] == "alice")
        .count();
    assert!(alice_steps > 0);
    assert_eq!(seen, alice_steps);
    // The session survives serialization.
    let again = SessionRecord::from_bytes(&record.to_bytes()).unwrap();
    assert_eq!(again.to_bytes(), record.to_bytes());
}

#[test]
fn both_sides_reproduce_every_ciphertext_byte_for_byte() {
    let f = fixture("signal_session.json");
    let b = bob(&f);
    let a = alice(&f);
    // Key pairs 0..4 are the long-term keys given above; the rest are generated in this order.
    let generated: Vec<KeyPair> = f["key_pairs"].as_array().unwrap()[4..]
        .iter()
        .map(|k| pair(k, "private", "public"))
        .collect();
    let mut keys = SequenceKeys::new(generated);

    let bundle = PreKeyBundle {
        registration_id: b.identity.registration_id,
        pre_key: Some((b.one_time_id, b.one_time.public)),
        signed_pre_key_id: b.signed_id,
        signed_pre_key: b.signed.public,
        signed_pre_key_signature: b.signature,
        identity_key: b.identity.key_pair.public,
    };
    let mut alice_rec = SessionRecord::new();
    alice_rec.promote(initiate(&a, &bundle, &mut keys).unwrap());
    let mut bob_rec = SessionRecord::new();

    for (i, step) in f["steps"].as_array().unwrap().iter().enumerate() {
        let plain = hexf(step, "plaintext_hex");
        let expected = hexf(step, "ciphertext_hex");
        let kind = step["type"].as_str().unwrap();
        let (sender, receiver_is_bob) = if step["from"] == "alice" {
            (&mut alice_rec, true)
        } else {
            (&mut bob_rec, false)
        };
        let ct = sender.encrypt(&plain).unwrap();
        assert_eq!(ct.enc_type(), kind, "step {i} type");
        assert_eq!(
            hex::encode(ct.bytes()),
            hex::encode(&expected),
            "step {i} ciphertext"
        );
        let got = if receiver_is_bob {
            bob_decrypt(&b, &mut bob_rec, kind, ct.bytes(), &mut keys)
        } else {
            match ct {
                CiphertextMessage::Whisper(m) => alice_rec
                    .decrypt(&SignalMessage::decode(&m).unwrap(), &mut keys)
                    .unwrap(),
                CiphertextMessage::PreKey(_) => panic!("bob never sends pkmsg"),
            }
        };
        assert_eq!(got, plain, "step {i} plaintext");
    }
    assert_eq!(keys.remaining(), 0, "every recorded key pair was used");
    let _ = strip_type;
}
