//! Every Signal wire message and stored record decoder returns Ok or Err on any bytes, never
//! panics; mutated genuine messages are refused without changing the session.

use proptest::prelude::*;

use crate::common::{identity, session_pair, signed_bundle};
use wa_gateway::signal::session::MAX_RECORD_SKIPPED;
use wa_gateway::signal::store::{PreKey, SignedPreKey, identity_from_bytes};
use wa_gateway::signal::{
    CiphertextMessage, KeyPair, OsKeys, PreKeySignalMessage, SenderKeyDistribution,
    SenderKeyRecord, SessionRecord, SignalError, SignalMessage, initiate,
};

fn whisper(c: CiphertextMessage) -> SignalMessage {
    SignalMessage::decode(c.bytes()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SignalMessage::decode(&data);
        let _ = PreKeySignalMessage::decode(&data);
        let _ = SenderKeyDistribution::decode(&data);
        let _ = SessionRecord::from_bytes(&data);
        let _ = SenderKeyRecord::from_bytes(&data);
        let _ = PreKey::from_bytes(&data);
        let _ = SignedPreKey::from_bytes(&data);
        let _ = identity_from_bytes(&data);
        // Decrypting garbage with an empty record, and with a record holding a real session
        // (which it must leave unchanged).
        if let Ok(m) = SignalMessage::decode(&data) {
            prop_assert!(SessionRecord::new().decrypt(&m, &mut OsKeys).is_err());
            let (_, mut bob) = session_pair();
            let before = bob.to_bytes();
            prop_assert!(bob.decrypt(&m, &mut OsKeys).is_err());
            prop_assert_eq!(bob.to_bytes(), before);
        }
        let mut group = SenderKeyRecord::new();
        let _ = group.distribution();
        prop_assert!(group.decrypt(&data).is_err());
    }

    #[test]
    fn versioned_prefix_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut v = vec![0x33];
        v.extend_from_slice(&data);
        let _ = SignalMessage::decode(&v);
        let _ = PreKeySignalMessage::decode(&v);
        let _ = SenderKeyDistribution::decode(&v);
        let mut group = SenderKeyRecord::new();
        let d = group.distribution();
        let mut peer = SenderKeyRecord::new();
        peer.process(&d);
        prop_assert!(peer.decrypt(&v).is_err());
    }

    #[test]
    fn mutated_sender_key_messages_are_refused(flip in 0usize..200, bit in 0u8..8) {
        let mut sender = SenderKeyRecord::new();
        let d = sender.distribution();
        let mut receiver = SenderKeyRecord::new();
        receiver.process(&d);
        let ct = sender.encrypt(b"group hello").unwrap();
        let mut bad = ct.clone();
        let i = flip % bad.len();
        bad[i] ^= 1 << bit;
        prop_assert!(receiver.decrypt(&bad).is_err());
        prop_assert_eq!(receiver.decrypt(&ct).unwrap(), b"group hello");
    }

    /// A distribution message may start a chain anywhere in the u32 range: near the end a chain
    /// works or refuses with `ChainExhausted`, on both sides alike; it never wraps or panics.
    #[test]
    fn sender_key_iterations_near_the_limit_never_overflow(back in 0u32..4, skip in 0u32..3) {
        use prost::Message;
        use wa_gateway::proto::wa::signal::SenderKeyRecordStructure;
        let mut fresh = SenderKeyRecord::new();
        let _ = fresh.distribution();
        // Our own sending state, stored at iteration u32::MAX - back.
        let mut pb = SenderKeyRecordStructure::decode(&fresh.to_bytes()[..]).unwrap();
        pb.sender_key_states[0].sender_chain_key.as_mut().unwrap().iteration = Some(u32::MAX - back);
        let mut sender = SenderKeyRecord::from_bytes(&pb.encode_to_vec()).unwrap();
        let d = sender.distribution();
        prop_assert_eq!(d.iteration, u32::MAX - back);
        let mut receiver = SenderKeyRecord::new();
        receiver.process(&d);
        let mut delivered = 0;
        for i in 0..=back + 1 {
            let sent = sender.encrypt(format!("m{i}").as_bytes());
            if let Err(e) = sent {
                prop_assert_eq!(e, SignalError::ChainExhausted(u32::MAX));
                prop_assert_eq!(i, back, "only the last iteration is refused");
                break;
            }
            match sent {
                Ok(ct) => {
                    // Some messages are lost on the way: the receiver skips ahead.
                    if i % (skip + 1) == 0 {
                        prop_assert_eq!(receiver.decrypt(&ct).unwrap(), format!("m{i}").into_bytes());
                        delivered += 1;
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, SignalError::ChainExhausted(u32::MAX));
                    prop_assert_eq!(i, back, "only the last iteration is refused");
                }
            }
        }
        prop_assert!(delivered >= 1 || back == 0);
    }
}

#[test]
fn a_validly_signed_message_at_the_last_iteration_is_refused_not_wrapped() {
    use prost::Message;
    use wa_gateway::proto::wa::signal::{SenderKeyMessage, SenderKeyRecordStructure};
    // A sender whose distribution puts its chain one step before the end of the u32 range.
    let mut sender = SenderKeyRecord::new();
    let mut d = sender.distribution();
    d.iteration = u32::MAX - 1;
    let mut receiver = SenderKeyRecord::new();
    receiver.process(&d);
    // It signs a message naming iteration u32::MAX: the signature verifies, and advancing the
    // chain past it would overflow (a panic in debug builds, a wrap in release, before the fix).
    let pb = SenderKeyRecordStructure::decode(&sender.to_bytes()[..]).unwrap();
    let private: [u8; 32] = pb.sender_key_states[0]
        .sender_signing_key
        .as_ref()
        .unwrap()
        .private
        .clone()
        .unwrap()
        .try_into()
        .unwrap();
    let mut msg = vec![0x33];
    SenderKeyMessage {
        id: Some(d.key_id),
        iteration: Some(u32::MAX),
        ciphertext: Some(vec![0; 16]),
    }
    .encode(&mut msg)
    .unwrap();
    let sig = wa_gateway::signal::xeddsa_sign(&private, &msg, &[5; 64]);
    msg.extend_from_slice(&sig);
    assert_eq!(
        receiver.decrypt(&msg).unwrap_err(),
        SignalError::ChainExhausted(u32::MAX)
    );
}

#[test]
fn skipped_keys_stay_bounded_per_record_however_the_peer_skips() {
    let (mut alice, mut bob) = session_pair();
    // Alice sends in bursts of 1,999 and Bob sees only each burst's last message: each burst
    // would park 1,998 skipped keys. Bob answers so that Alice ratchets, and the next burst opens a
    // new receiving chain on Bob's side (up to 5 chains per state).
    for round in 0..8 {
        let mut last = None;
        for _ in 0..1999 {
            last = Some(alice.encrypt(b"burst").unwrap());
        }
        let m = whisper(last.unwrap());
        assert_eq!(
            bob.decrypt(&m, &mut OsKeys).unwrap(),
            b"burst",
            "round {round}"
        );
        assert!(
            bob.skipped_keys() <= MAX_RECORD_SKIPPED,
            "round {round}: {} skipped keys",
            bob.skipped_keys()
        );
        let reply = whisper(bob.encrypt(b"ack").unwrap());
        assert_eq!(alice.decrypt(&reply, &mut OsKeys).unwrap(), b"ack");
    }
    assert!(bob.skipped_keys() > 0, "the newest skipped keys are kept");
    assert!(
        bob.to_bytes().len() < 300 * 1024,
        "{} bytes",
        bob.to_bytes().len()
    );
}

#[test]
fn many_states_from_pkmsgs_without_one_time_keys_stay_bounded() {
    // Every pkmsg with a new base key archives the current state. With skipped keys in each,
    // the record must still stay within the global cap.
    let bob = identity(2);
    let signed = KeyPair::generate();
    let bundle = signed_bundle(&bob, &signed);
    let mut record = SessionRecord::new();
    for _ in 0..60 {
        let mut a = SessionRecord::new();
        a.promote(initiate(&identity(1), &bundle, &mut OsKeys).unwrap());
        let mut last = None;
        for _ in 0..500 {
            last = Some(a.encrypt(b"x").unwrap());
        }
        let m = PreKeySignalMessage::decode(last.unwrap().bytes()).unwrap();
        record
            .decrypt_pre_key(&m, &bob, Some(&signed), None, &mut OsKeys)
            .unwrap();
        assert!(record.skipped_keys() <= MAX_RECORD_SKIPPED);
    }
    assert_eq!(record.previous().count(), 40, "archived states stay capped");
}

/// Counts the ratchet key pairs a decryption generates: one per DH ratchet step it tries.
struct CountingKeys(u32);

impl wa_gateway::signal::KeySource for CountingKeys {
    fn generate(&mut self) -> KeyPair {
        self.0 += 1;
        KeyPair::generate()
    }
}

#[test]
fn a_message_no_state_can_read_costs_a_bounded_amount_of_work() {
    use wa_gateway::signal::ratchet::MessageKeys;
    // Bob holds a current and 40 archived states (60 peers' pkmsgs without one-time keys).
    let bob = identity(2);
    let signed = KeyPair::generate();
    let bundle = signed_bundle(&bob, &signed);
    let mut record = SessionRecord::new();
    for _ in 0..45 {
        let mut a = SessionRecord::new();
        a.promote(initiate(&identity(1), &bundle, &mut OsKeys).unwrap());
        let m = PreKeySignalMessage::decode(a.encrypt(b"x").unwrap().bytes()).unwrap();
        record
            .decrypt_pre_key(&m, &bob, Some(&signed), None, &mut OsKeys)
            .unwrap();
    }
    assert_eq!(record.previous().count(), 40);
    // A message under a new ratchet key, far ahead, with a MAC no state can match: each state
    // would take a DH ratchet step and derive 1,999 keys before failing.
    let keys = MessageKeys {
        cipher_key: [1; 32],
        mac_key: [2; 32],
        iv: [3; 16],
        counter: 1999,
    };
    let forged = SignalMessage::encode(
        &keys,
        &KeyPair::generate().public,
        0,
        vec![0; 16],
        &[4; 32],
        &bob.key_pair.public,
    );
    let m = SignalMessage::decode(&forged).unwrap();
    let before = record.to_bytes();
    let mut counting = CountingKeys(0);
    assert!(record.decrypt(&m, &mut counting).is_err());
    assert_eq!(
        record.to_bytes(),
        before,
        "a failed decryption changes nothing"
    );
    assert!(
        counting.0 <= 3,
        "{} ratchet steps for one undecryptable message",
        counting.0
    );
}
