//! Round trips and every refusal of the app-state core (the Appendix B check values are in
//! `keys.rs` and `lthash.rs`).

use std::collections::HashMap;

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use prost::Message;

use super::action::Salt;
use super::encode::{self, message_range};
use super::*;
use crate::binary::Jid;
use crate::proto::wa;

const KID: &[u8] = b"\x00\x01key-one";
const KID2: &[u8] = b"\x00\x02key-two";

fn keyring() -> HashMap<Vec<u8>, MutationKeys> {
    let mut m = HashMap::new();
    m.insert(KID.to_vec(), MutationKeys::expand(&[1u8; 32]));
    m.insert(KID2.to_vec(), MutationKeys::expand(&[2u8; 32]));
    m
}

fn keys() -> MutationKeys {
    MutationKeys::expand(&[1u8; 32])
}

/// A deterministic IV source: 0x00.., 0x01.., …
fn ivs() -> impl FnMut() -> [u8; 16] {
    let mut n = 0u8;
    move || {
        n = n.wrapping_add(1);
        [n; 16]
    }
}

fn chat(s: &str) -> Jid {
    s.parse().unwrap()
}

fn contacts(n: usize) -> Vec<PendingMutation> {
    (0..n)
        .map(|i| {
            let jid = chat(&format!("{}@s.whatsapp.net", 1000 + i));
            let action = wa::ContactAction {
                full_name: Some(format!("Contact {i}")),
                ..Default::default()
            };
            encode::contact(&jid, Some(action)).1.remove(0)
        })
        .collect()
}

/// A synced collection of `n` contacts at version 5.
fn synced(n: usize) -> CollectionState {
    let (snap, _) = encode_snapshot(
        Collection::CriticalUnblockLow,
        5,
        &contacts(n),
        KID,
        &keys(),
        &mut ivs(),
    );
    let a = decode_snapshot(Collection::CriticalUnblockLow, &snap, &keyring()).unwrap();
    let mut s = CollectionState::default();
    s.apply(&a);
    s
}

/// Our patch as the server relays it: with its version.
fn relayed(mut p: wa::SyncdPatch, version: u64) -> wa::SyncdPatch {
    p.version = Some(wa::SyncdVersion {
        version: Some(version),
    });
    p
}

/// Recomputes the patch MAC after a test tampered with a record, so the check under test is
/// the one that fails.
fn resign(p: &mut wa::SyncdPatch, c: Collection) {
    let k = keys();
    let version = p.version.as_ref().unwrap().version.unwrap();
    let macs: Vec<Vec<u8>> = p
        .mutations
        .iter()
        .map(|m| {
            let b = m
                .record
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .blob
                .as_ref()
                .unwrap();
            b[b.len().saturating_sub(32)..].to_vec()
        })
        .collect();
    let mac = k.patch_mac(
        p.snapshot_mac.as_deref().unwrap(),
        macs.iter().map(|m| &m[..]),
        version,
        c,
    );
    p.patch_mac = Some(mac.to_vec());
}

/// The LTHash of a MAC table, built afresh.
fn rehash(s: &CollectionState) -> LtHash {
    let mut h = LtHash::default();
    for v in s.macs.values() {
        h.add(v);
    }
    h
}

/// A SET record from raw `SyncActionData` bytes (for inputs the encoder cannot make).
fn raw_record(raw: &[u8], index_json: &[u8]) -> wa::SyncdRecord {
    let k = keys();
    let mut blob = k.encrypt_value(raw, [7u8; 16]);
    let vm = k.value_mac(Operation::Set, &blob, KID);
    blob.extend_from_slice(&vm);
    wa::SyncdRecord {
        index: Some(wa::SyncdIndex {
            blob: Some(k.index_mac(index_json).to_vec()),
        }),
        value: Some(wa::SyncdValue { blob: Some(blob) }),
        key_id: Some(wa::KeyId {
            id: Some(KID.to_vec()),
        }),
    }
}

/// A snapshot of the given records, MAC'd correctly over their value MACs.
fn snapshot_of(records: Vec<wa::SyncdRecord>) -> wa::SyncdSnapshot {
    let k = keys();
    let mut h = LtHash::default();
    for r in &records {
        let b = r.value.as_ref().unwrap().blob.as_ref().unwrap();
        h.add(&b[b.len() - 32..]);
    }
    wa::SyncdSnapshot {
        version: Some(wa::SyncdVersion { version: Some(1) }),
        records,
        mac: Some(k.snapshot_mac(&h, 1, Collection::Regular).to_vec()),
        key_id: Some(wa::KeyId {
            id: Some(KID.to_vec()),
        }),
    }
}

fn data_bytes(index_json: &[u8]) -> Vec<u8> {
    wa::SyncActionData {
        index: Some(index_json.to_vec()),
        value: Some(wa::SyncActionValue::default()),
        padding: Some(Vec::new()),
        version: Some(1),
    }
    .encode_to_vec()
}

#[test]
fn snapshot_round_trips_and_state_is_consistent() {
    let c = Collection::CriticalUnblockLow;
    let (snap, made) = encode_snapshot(c, 5, &contacts(20), KID, &keys(), &mut ivs());
    let got = decode_snapshot(c, &snap, &keyring()).unwrap();
    assert_eq!(got, made);
    assert_eq!(got.mutations.len(), 20);
    assert_eq!(got.mutations[3].index, ["contact", "1003@s.whatsapp.net"]);
    let mut s = CollectionState::default();
    s.apply(&got);
    assert_eq!((s.version, s.macs.len()), (5, 20));
    assert_eq!(rehash(&s), s.hash);
    // A snapshot replaces the table: an older record does not survive it.
    let mut stale = s.clone();
    stale.macs.insert([9; 32], [9; 32]);
    stale.apply(&got);
    assert_eq!(stale, s);
}

#[test]
fn patch_round_trips_through_the_decoder() {
    let mut s = synced(10);
    let c = Collection::RegularLow;
    s.version = 0;
    s.macs.clear();
    s.hash = LtHash::default();
    let (_, muts) = encode::archive(&chat("1@s.whatsapp.net"), true, message_range(1700, None));
    let (patch, made) = encode_patch(c, &s, KID, &keys(), &muts, 1_735_732_800_000, &mut ivs());
    assert!(patch.version.is_none(), "a sent patch carries no version");
    assert_eq!(made.version, 1);
    let got = decode_patch(c, &s, &relayed(patch, 1), &keyring()).unwrap();
    assert_eq!(got, made);
    assert_eq!(got.mutations.len(), 2, "archiving also unpins");
    assert_eq!(got.mutations[1].index, ["pin_v1", "1@s.whatsapp.net"]);
    let v = got.mutations[0].data.value.as_ref().unwrap();
    assert_eq!(v.timestamp, Some(1_735_732_800_000));
    s.apply(&got);
    assert_eq!(rehash(&s), s.hash);

    // A second patch overwrites one record: its old value is subtracted.
    let (_, muts) = encode::pin(&chat("1@s.whatsapp.net"), true);
    let (patch, made) = encode_patch(c, &s, KID, &keys(), &muts, 1, &mut ivs());
    let got = decode_patch(c, &s, &relayed(patch, 2), &keyring()).unwrap();
    assert_eq!(got, made);
    s.apply(&got);
    assert_eq!((s.version, s.macs.len()), (2, 2));
    assert_eq!(rehash(&s), s.hash);
}

#[test]
fn set_and_remove_of_one_index_follow_index_mode_in_either_order() {
    let c = Collection::CriticalUnblockLow;
    let base = synced(3);
    let jid = chat("1001@s.whatsapp.net");
    let stored = base.macs[&keys().index_mac(br#"["contact","1001@s.whatsapp.net"]"#)];
    let set = encode::contact(
        &jid,
        Some(wa::ContactAction {
            full_name: Some("New".into()),
            ..Default::default()
        }),
    )
    .1
    .remove(0);
    let remove = encode::contact(&jid, None).1.remove(0);
    for order in [[set.clone(), remove.clone()], [remove.clone(), set.clone()]] {
        let (patch, made) = encode_patch(c, &base, KID, &keys(), &order, 9, &mut ivs());
        let got = decode_patch(c, &base, &relayed(patch, 6), &keyring()).unwrap();
        assert_eq!(got, made);
        let new = got
            .mutations
            .iter()
            .find(|m| m.operation == Operation::Set)
            .unwrap()
            .value_mac;
        // base − stored + new: the REMOVE subtracts the stored value, the SET only adds.
        let mut want = base.hash;
        want.subtract(&stored);
        want.add(&new);
        assert_eq!(got.hash, want);
        let mut s = base.clone();
        s.apply(&got);
        assert_eq!(s.macs.len(), 3, "delete-then-put keeps the SET's value");
        assert_eq!(rehash(&s), s.hash);
    }
}

#[test]
fn a_repeated_index_within_one_operation_is_refused() {
    let c = Collection::RegularLow;
    let s = CollectionState::default();
    let (_, mut muts) = encode::pin(&chat("1@s.whatsapp.net"), true);
    muts.push(muts[0].clone());
    let (patch, _) = encode_patch(c, &s, KID, &keys(), &muts, 9, &mut ivs());
    assert_eq!(
        decode_patch(c, &s, &relayed(patch, 1), &keyring()),
        Err(AppStateError::DuplicateIndex)
    );
}

#[test]
fn a_remove_of_an_unknown_record_is_accepted() {
    let c = Collection::CriticalUnblockLow;
    let s = CollectionState::default();
    let muts = encode::contact(&chat("5@s.whatsapp.net"), None).1;
    let (patch, made) = encode_patch(c, &s, KID, &keys(), &muts, 9, &mut ivs());
    let got = decode_patch(c, &s, &relayed(patch, 1), &keyring()).unwrap();
    assert_eq!(got.hash, LtHash::default());
    assert_eq!(got, made);
}

fn sample_patch() -> (CollectionState, wa::SyncdPatch) {
    let s = synced(3);
    let c = Collection::CriticalUnblockLow;
    let muts = contacts(2);
    let (patch, _) = encode_patch(c, &s, KID, &keys(), &muts, 9, &mut ivs());
    (s, relayed(patch, 6))
}

fn value_blob(p: &mut wa::SyncdPatch, i: usize) -> &mut Vec<u8> {
    p.mutations[i]
        .record
        .as_mut()
        .unwrap()
        .value
        .as_mut()
        .unwrap()
        .blob
        .as_mut()
        .unwrap()
}

#[test]
fn every_mac_failure_is_told_apart() {
    let c = Collection::CriticalUnblockLow;
    let (s, good) = sample_patch();
    assert!(decode_patch(c, &s, &good, &keyring()).is_ok());

    let mut p = good.clone();
    p.patch_mac.as_mut().unwrap()[0] ^= 1;
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadPatchMac)
    );

    // The patch MAC covers the snapshot MAC and the value MACs.
    let mut p = good.clone();
    p.snapshot_mac.as_mut().unwrap()[0] ^= 1;
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadPatchMac)
    );
    let mut p = good.clone();
    *value_blob(&mut p, 1).last_mut().unwrap() ^= 1;
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadPatchMac)
    );
    // …and the version and the collection name.
    let p = relayed(good.clone(), 7);
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadPatchMac)
    );
    assert_eq!(
        decode_patch(Collection::Regular, &s, &good, &keyring()),
        Err(AppStateError::BadPatchMac)
    );

    // Ciphertext changed, MAC list intact: the value MAC fails.
    let mut p = good.clone();
    value_blob(&mut p, 0)[20] ^= 1;
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadValueMac)
    );

    // Index MAC changed (not covered by the patch MAC).
    let mut p = good.clone();
    p.mutations[1]
        .record
        .as_mut()
        .unwrap()
        .index
        .as_mut()
        .unwrap()
        .blob
        .as_mut()
        .unwrap()[0] ^= 1;
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadIndexMac)
    );

    // A different prior state: the LTHash no longer gives the snapshot MAC.
    let mut other = s.clone();
    other.hash.add(&[5u8; 32]);
    assert_eq!(
        decode_patch(c, &other, &good, &keyring()),
        Err(AppStateError::BadSnapshotMac)
    );
    // A stored value missing from the table changes what is subtracted: same outcome.
    let mut p = good.clone();
    p.mutations.truncate(1);
    resign(&mut p, c);
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::BadSnapshotMac)
    );
}

#[test]
fn snapshot_mac_and_record_failures() {
    let c = Collection::CriticalUnblockLow;
    let (snap, _) = encode_snapshot(c, 5, &contacts(3), KID, &keys(), &mut ivs());
    let mut bad = snap.clone();
    bad.mac.as_mut().unwrap()[31] ^= 1;
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadSnapshotMac)
    );
    let mut bad = snap.clone();
    bad.version = Some(wa::SyncdVersion { version: Some(6) });
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadSnapshotMac)
    );
    let mut bad = snap.clone();
    bad.records.pop();
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadSnapshotMac)
    );
    let mut bad = snap.clone();
    bad.records[0]
        .value
        .as_mut()
        .unwrap()
        .blob
        .as_mut()
        .unwrap()[17] ^= 1;
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadValueMac)
    );
    let mut bad = snap.clone();
    bad.records[2].index.as_mut().unwrap().blob = Some(vec![0; 31]);
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadIndexMac)
    );
    // Truncated value blobs: shorter than MAC + IV + one block, and not block-aligned.
    for cut in [0usize, 31, 32, 63] {
        let mut bad = snap.clone();
        bad.records[1]
            .value
            .as_mut()
            .unwrap()
            .blob
            .as_mut()
            .unwrap()
            .truncate(cut);
        assert_eq!(
            decode_snapshot(c, &bad, &keyring()),
            Err(AppStateError::Truncated),
            "{cut}"
        );
    }
    let mut bad = snap.clone();
    bad.records[1]
        .value
        .as_mut()
        .unwrap()
        .blob
        .as_mut()
        .unwrap()
        .remove(0);
    // One byte fewer moves the MAC window: the value MAC fails before alignment is looked at.
    assert_eq!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::BadValueMac)
    );
    // Missing fields.
    let mut bad = snap.clone();
    bad.version = None;
    assert!(matches!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::Malformed(_))
    ));
    let mut bad = snap.clone();
    bad.records[0].value = None;
    assert!(matches!(
        decode_snapshot(c, &bad, &keyring()),
        Err(AppStateError::Malformed(_))
    ));
}

#[test]
fn a_truncated_blob_in_a_patch_is_refused() {
    let c = Collection::CriticalUnblockLow;
    let (s, good) = sample_patch();
    let mut p = good.clone();
    value_blob(&mut p, 0).truncate(20);
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::Truncated)
    );
    let mut p = good.clone();
    // Drop one ciphertext byte but keep the MAC: the value MAC window is intact, re-signed.
    let b = value_blob(&mut p, 0);
    let n = b.len();
    b.remove(n - 33);
    let k = keys();
    let enc_len = b.len() - 32;
    let vm = k.value_mac(Operation::Set, &b[..enc_len], KID);
    b[enc_len..].copy_from_slice(&vm);
    resign(&mut p, c);
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::Truncated)
    );
}

#[test]
fn bad_padding_is_told_apart() {
    let k = keys();
    let iv = [3u8; 16];
    let mut block = [0u8; 16];
    block[15] = 0; // PKCS#7 never ends in 0
    let ct = cbc::Encryptor::<Aes256>::new((&k.value_encryption).into(), (&iv).into())
        .encrypt_padded_vec_mut::<NoPadding>(&block);
    let mut blob = iv.to_vec();
    blob.extend_from_slice(&ct);
    let vm = k.value_mac(Operation::Set, &blob, KID);
    blob.extend_from_slice(&vm);
    let record = wa::SyncdRecord {
        index: Some(wa::SyncdIndex {
            blob: Some(vec![0; 32]),
        }),
        value: Some(wa::SyncdValue { blob: Some(blob) }),
        key_id: Some(wa::KeyId {
            id: Some(KID.to_vec()),
        }),
    };
    assert_eq!(
        decode_snapshot(Collection::Regular, &snapshot_of(vec![record]), &keyring()),
        Err(AppStateError::BadPadding)
    );
}

#[test]
fn the_index_must_be_a_bounded_json_array_of_strings() {
    let c = Collection::Regular;
    for bad in [
        &b"not json"[..],
        br#"{"a":"b"}"#,
        br#"["mute",1]"#,
        br#""mute""#,
        b"",
    ] {
        let snap = snapshot_of(vec![raw_record(&data_bytes(bad), bad)]);
        assert_eq!(
            decode_snapshot(c, &snap, &keyring()),
            Err(AppStateError::BadIndex),
            "{bad:?}"
        );
    }
    let long = format!("[\"{}\"]", "x".repeat(MAX_INDEX_LEN));
    let snap = snapshot_of(vec![raw_record(
        &data_bytes(long.as_bytes()),
        long.as_bytes(),
    )]);
    assert_eq!(
        decode_snapshot(c, &snap, &keyring()),
        Err(AppStateError::TooLarge("index"))
    );
    let many = serde_json::to_vec(&vec!["a"; MAX_INDEX_PARTS + 1]).unwrap();
    let snap = snapshot_of(vec![raw_record(&data_bytes(&many), &many)]);
    assert_eq!(
        decode_snapshot(c, &snap, &keyring()),
        Err(AppStateError::TooLarge("index parts"))
    );
    // Not a SyncActionData at all.
    let snap = snapshot_of(vec![raw_record(&[0xff, 0xff, 0xff], b"[]")]);
    assert!(matches!(
        decode_snapshot(c, &snap, &keyring()),
        Err(AppStateError::Malformed(_))
    ));
    // An empty array is an index (of nothing the gateway knows).
    let snap = snapshot_of(vec![raw_record(&data_bytes(b"[]"), b"[]")]);
    let a = decode_snapshot(c, &snap, &keyring()).unwrap();
    assert_eq!(Action::from_mutation(&a.mutations[0]), Action::Other);
}

#[test]
fn counts_and_sizes_are_capped() {
    let c = Collection::Regular;
    let s = CollectionState::default();
    let p = wa::SyncdPatch {
        version: Some(wa::SyncdVersion { version: Some(1) }),
        mutations: vec![wa::SyncdMutation::default(); MAX_RECORDS + 1],
        snapshot_mac: Some(vec![0; 32]),
        patch_mac: Some(vec![0; 32]),
        key_id: Some(wa::KeyId {
            id: Some(KID.to_vec()),
        }),
        ..Default::default()
    };
    assert_eq!(
        decode_patch(c, &s, &p, &keyring()),
        Err(AppStateError::TooLarge("mutations"))
    );
    let snap = wa::SyncdSnapshot {
        records: vec![wa::SyncdRecord::default(); MAX_RECORDS + 1],
        ..snapshot_of(vec![])
    };
    assert_eq!(
        decode_snapshot(c, &snap, &keyring()),
        Err(AppStateError::TooLarge("records"))
    );
    let mut rec = raw_record(&data_bytes(b"[]"), b"[]");
    rec.value.as_mut().unwrap().blob = Some(vec![0; MAX_VALUE_LEN + 1]);
    assert_eq!(
        decode_snapshot(c, &snapshot_of(vec![rec]), &keyring()),
        Err(AppStateError::TooLarge("value"))
    );
}

#[test]
fn a_missing_key_names_the_key_and_missing_keys_lists_each_once() {
    let c = Collection::CriticalUnblockLow;
    let only_two: HashMap<Vec<u8>, MutationKeys> =
        [(KID2.to_vec(), MutationKeys::expand(&[2u8; 32]))].into();
    let (s, patch) = sample_patch();
    assert_eq!(
        decode_patch(c, &s, &patch, &only_two),
        Err(AppStateError::MissingKey(KeyId(KID.to_vec())))
    );
    // The patch's key is known but a record's is not.
    let mut p = patch.clone();
    p.key_id = Some(wa::KeyId {
        id: Some(KID2.to_vec()),
    });
    let mut both = keyring();
    both.insert(KID2.to_vec(), keys()); // same key material under the second id
    let mut p2 = p.clone();
    resign(&mut p2, c);
    let mut partial: HashMap<Vec<u8>, MutationKeys> = HashMap::new();
    partial.insert(KID2.to_vec(), keys());
    assert_eq!(
        decode_patch(c, &s, &p2, &partial),
        Err(AppStateError::MissingKey(KeyId(KID.to_vec())))
    );
    assert!(decode_patch(c, &s, &p2, &both).is_ok());

    let (snap, _) = encode_snapshot(c, 5, &contacts(2), KID, &keys(), &mut ivs());
    assert_eq!(
        decode_snapshot(c, &snap, &only_two),
        Err(AppStateError::MissingKey(KeyId(KID.to_vec())))
    );
    assert_eq!(
        missing_keys(Some(&snap), [&p, &patch], &only_two),
        vec![KID.to_vec()]
    );
    assert!(missing_keys(Some(&snap), [&p], &keyring()).is_empty());
    assert_eq!(
        missing_keys(None, [&p], &HashMap::<Vec<u8>, MutationKeys>::new()),
        vec![KID2.to_vec(), KID.to_vec()]
    );
    // The key id shows as hex in Debug, the keys never.
    assert_eq!(format!("{:?}", KeyId(vec![0xab, 1])), "KeyId(ab01)");
}

#[test]
fn recovery_copies_are_reindexed_and_their_hash_checked() {
    let c = Collection::RegularHigh;
    let (_, muts) = encode::mute(&chat("1@s.whatsapp.net"), Some(-1));
    let (_, made) = encode_snapshot(c, 9, &muts, KID, &keys(), &mut ivs());
    let rec = wa::SyncdSnapshotRecovery {
        version: Some(wa::SyncdVersion { version: Some(9) }),
        collection_name: Some("regular_high".into()),
        mutation_records: made
            .mutations
            .iter()
            .map(|m| wa::SyncdPlainTextRecord {
                value: Some(m.data.clone()),
                key_id: Some(m.key_id.clone()),
                mac: Some(m.value_mac.to_vec()),
            })
            .collect(),
        collection_lthash: Some(made.hash.0.to_vec()),
    };
    let got = decode_recovery(c, &rec, &keyring()).unwrap();
    assert_eq!(got, made);
    assert_eq!(
        decode_recovery(Collection::Regular, &rec, &keyring()),
        Err(AppStateError::WrongCollection)
    );
    let mut bad = rec.clone();
    bad.collection_lthash.as_mut().unwrap()[0] ^= 1;
    assert_eq!(
        decode_recovery(c, &bad, &keyring()),
        Err(AppStateError::BadLtHash)
    );
    let mut bad = rec.clone();
    bad.collection_lthash = Some(vec![0; 127]);
    assert!(matches!(
        decode_recovery(c, &bad, &keyring()),
        Err(AppStateError::Malformed(_))
    ));
    assert_eq!(
        decode_recovery(c, &rec, &HashMap::<Vec<u8>, MutationKeys>::new()),
        Err(AppStateError::MissingKey(KeyId(KID.to_vec())))
    );
}

/// Encodes `muts` as one patch on an empty state and reads the actions back.
fn actions(c: Collection, muts: &[PendingMutation]) -> Vec<Action> {
    let s = CollectionState::default();
    let (patch, _) = encode_patch(c, &s, KID, &keys(), muts, 5, &mut ivs());
    let a = decode_patch(c, &s, &relayed(patch, 1), &keyring()).unwrap();
    a.mutations.iter().map(Action::from_mutation).collect()
}

fn pending(index: &[&str], value: wa::SyncActionValue) -> PendingMutation {
    PendingMutation {
        operation: Operation::Set,
        index: index.iter().map(|s| s.to_string()).collect(),
        value,
        version: 1,
    }
}

#[test]
fn builders_give_the_actions_they_mean() {
    let j = chat("1@s.whatsapp.net");
    let r = || message_range(1_700_000_000, None);
    type Case = ((Collection, Vec<PendingMutation>), Vec<Action>);
    let cases: Vec<Case> = vec![
        (
            encode::mute(&j, Some(-1)),
            vec![Action::Mute {
                chat: j.clone(),
                until_ms: Some(-1),
            }],
        ),
        (
            encode::mute(&j, Some(99)),
            vec![Action::Mute {
                chat: j.clone(),
                until_ms: Some(99),
            }],
        ),
        (
            encode::mute(&j, None),
            vec![Action::Mute {
                chat: j.clone(),
                until_ms: None,
            }],
        ),
        (
            encode::archive(&j, true, r()),
            vec![
                Action::Archive {
                    chat: j.clone(),
                    archived: true,
                },
                Action::Pin {
                    chat: j.clone(),
                    pinned: false,
                },
            ],
        ),
        (
            encode::archive(&j, false, r()),
            vec![Action::Archive {
                chat: j.clone(),
                archived: false,
            }],
        ),
        (
            encode::pin(&j, true),
            vec![Action::Pin {
                chat: j.clone(),
                pinned: true,
            }],
        ),
        (
            encode::mark_read(&j, false, r()),
            vec![Action::MarkRead {
                chat: j.clone(),
                read: false,
            }],
        ),
        (
            encode::delete_chat(&j, true, r()),
            vec![Action::DeleteChat { chat: j.clone() }],
        ),
        (
            encode::nct_salt(Some(b"salty")),
            vec![Action::NctSalt(Some(Salt(b"salty".to_vec())))],
        ),
        (encode::nct_salt(None), vec![Action::NctSalt(None)]),
        (encode::nct_salt(Some(b"")), vec![Action::Other]),
        (
            encode::contact(
                &j,
                Some(wa::ContactAction {
                    full_name: Some("Ann Lee".into()),
                    first_name: Some("Ann".into()),
                    lid_jid: Some("77@lid".into()),
                    ..Default::default()
                }),
            ),
            vec![Action::Contact {
                jid: j.clone(),
                full_name: Some("Ann Lee".into()),
                first_name: Some("Ann".into()),
                lid: Some(chat("77@lid")),
                pn: None,
                username: None,
            }],
        ),
        (
            encode::contact(&j, None),
            vec![Action::ContactRemoved { jid: j.clone() }],
        ),
    ];
    for ((c, muts), want) in cases {
        assert_eq!(actions(c, &muts), want, "{muts:?}");
    }
    // The §3.6 table: collection and action version.
    assert_eq!(encode::mute(&j, None).0, Collection::RegularHigh);
    assert_eq!(encode::mute(&j, None).1[0].version, 2);
    assert_eq!(encode::archive(&j, true, r()).1[0].version, 3);
    assert_eq!(encode::pin(&j, true).1[0].version, 5);
    assert_eq!(encode::mark_read(&j, true, r()).0, Collection::RegularLow);
    assert_eq!(encode::mark_read(&j, true, r()).1[0].version, 3);
    assert_eq!(encode::contact(&j, None).0, Collection::CriticalUnblockLow);
    assert_eq!(encode::contact(&j, None).1[0].version, 2);
    assert_eq!(encode::nct_salt(None).0, Collection::RegularHigh);
    assert_eq!(
        encode::delete_chat(&j, false, r()).1[0].index,
        ["deleteChat", "1@s.whatsapp.net", "0"]
    );
    assert_eq!(encode::delete_chat(&j, false, r()).1[0].version, 6);
}

#[test]
fn incoming_actions_are_read_and_anything_odd_is_other() {
    let c = Collection::Regular;
    let v = |f: fn(&mut wa::SyncActionValue)| {
        let mut x = wa::SyncActionValue::default();
        f(&mut x);
        x
    };
    let muts = vec![
        pending(
            &["setting_pushName"],
            v(|x| {
                x.push_name_setting = Some(wa::PushNameSetting {
                    name: Some("Me".into()),
                })
            }),
        ),
        pending(
            &["lid_contact", "9@lid"],
            v(|x| {
                x.lid_contact_action = Some(wa::LidContactAction {
                    full_name: Some("L".into()),
                    ..Default::default()
                })
            }),
        ),
        pending(
            &["pnForLidChat", "9@lid"],
            v(|x| {
                x.pn_for_lid_chat_action = Some(wa::PnForLidChatAction {
                    pn_jid: Some("5@s.whatsapp.net".into()),
                })
            }),
        ),
        pending(
            &["star", "g@g.us", "ABC", "0", "5@s.whatsapp.net"],
            v(|x| {
                x.star_action = Some(wa::StarAction {
                    starred: Some(true),
                })
            }),
        ),
        pending(
            &["deleteMessageForMe", "5@s.whatsapp.net", "ID", "1", "0"],
            v(|x| x.delete_message_for_me_action = Some(wa::DeleteMessageForMeAction::default())),
        ),
        pending(
            &["clearChat", "5@s.whatsapp.net", "1", "0"],
            v(|x| x.clear_chat_action = Some(wa::ClearChatAction::default())),
        ),
        pending(
            &["contact", "5@s.whatsapp.net"],
            v(|x| {
                x.contact_action = Some(wa::ContactAction {
                    pn_jid: Some("5@s.whatsapp.net".into()),
                    ..Default::default()
                })
            }),
        ),
        // Unknown index, index without its JID, a JID that does not parse, the wrong value field.
        pending(&["label_edit", "3"], wa::SyncActionValue::default()),
        pending(
            &["mute"],
            v(|x| x.mute_action = Some(wa::MuteAction::default())),
        ),
        pending(
            &["archive", "not a jid"],
            v(|x| x.archive_chat_action = Some(wa::ArchiveChatAction::default())),
        ),
        pending(
            &["pin_v1", "1@s.whatsapp.net"],
            v(|x| x.mute_action = Some(wa::MuteAction::default())),
        ),
        pending(
            &["star", "g@g.us", "ABC"],
            v(|x| x.star_action = Some(wa::StarAction::default())),
        ),
        pending(&["setting_pushName", "2"], wa::SyncActionValue::default()),
    ];
    let five = chat("5@s.whatsapp.net");
    let want = vec![
        Action::PushName("Me".into()),
        Action::LidContact {
            lid: chat("9@lid"),
            full_name: Some("L".into()),
            first_name: None,
            username: None,
        },
        Action::PnForLidChat {
            lid: chat("9@lid"),
            pn: five.clone(),
        },
        Action::Star {
            chat: chat("g@g.us"),
            id: "ABC".into(),
            from_me: false,
            participant: Some(five.clone()),
            starred: true,
        },
        Action::DeleteMessageForMe {
            chat: five.clone(),
            id: "ID".into(),
            from_me: true,
            participant: None,
        },
        Action::ClearChat { chat: five.clone() },
        Action::Contact {
            jid: five.clone(),
            full_name: None,
            first_name: None,
            lid: None,
            pn: Some(five.clone()),
            username: None,
        },
        Action::Other,
        Action::Other,
        Action::Other,
        Action::Other,
        Action::Other,
        Action::Other,
    ];
    assert_eq!(actions(c, &muts), want);
    // A REMOVE of a setting is `Removed`; a salt never shows in Debug.
    let mut rm = pending(
        &["pin_v1", "1@s.whatsapp.net"],
        wa::SyncActionValue::default(),
    );
    rm.operation = Operation::Remove;
    assert_eq!(actions(c, &[rm]), vec![Action::Removed]);
    let shown = format!("{:?}", Action::NctSalt(Some(Salt(b"secret-salt".to_vec()))));
    assert!(
        !shown.contains("secret") && !shown.contains("7365"),
        "{shown}"
    );
    let (_, salt) = encode::nct_salt(Some(b"secret-salt"));
    assert!(!format!("{salt:?}").contains("secret"));
}
