//! Every Signal wire message and stored record decoder returns Ok or Err on any bytes, never
//! panics; mutated genuine messages are refused without changing the session.

use proptest::prelude::*;
use wa_gateway::signal::store::{PreKey, SignedPreKey, identity_from_bytes};
use wa_gateway::signal::{
    KeyPair, OsKeys, PreKeySignalMessage, SenderKeyDistribution, SenderKeyRecord, SessionRecord,
    SignalMessage,
};

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
        // Decrypting garbage with an empty record or a record holding a random state.
        if let Ok(m) = SignalMessage::decode(&data) {
            prop_assert!(SessionRecord::new().decrypt(&m, &mut OsKeys).is_err());
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
        let _ = KeyPair::generate();
    }
}
