//! Fuzzes what the server (or a tampering relay) controls in app-state sync: arbitrary bytes as
//! a `SyncdPatch`, `SyncdSnapshot` or `SyncdSnapshotRecovery` for the decoders, under a fixed
//! key. Raw inputs cannot forge the MACs, so a "sealed" mode also takes the input as a patch
//! whose record values are *plaintext*: the target encrypts and MACs them with the fixed key
//! (value MAC, index MAC from the plaintext's index, snapshot and patch MACs over an empty
//! state), so arbitrary `SyncActionData`, index JSON, operations and duplicate indices reach the
//! decryptor, the JSON parser, the LTHash fold and `Action::from_mutation`. Any input must give
//! Ok or Err, never a panic; a patch that verifies must leave a table whose LTHash is its hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use wa_gateway::appstate::{
    Action, Collection, CollectionState, LtHash, MutationKeys, Operation, decode_patch,
    decode_recovery, decode_snapshot, missing_keys,
};
use wa_gateway::proto::wa;

const KID: &[u8] = b"\x00\x00fuzz";

fn keys(id: &[u8]) -> Option<MutationKeys> {
    (id == KID).then(|| MutationKeys::expand(&[7; 32]))
}

/// Encrypts and MACs each record's value blob as plaintext, then MACs the patch over an empty
/// state (index mode on an empty table: the hash is the sum of the SETs' value MACs).
fn seal(patch: &mut wa::SyncdPatch, c: Collection, version: u64) {
    let k = keys(KID).expect("fixed key");
    let mut hash = LtHash::default();
    let mut vms = Vec::new();
    for m in &mut patch.mutations {
        let op = Operation::from_proto(m.operation).unwrap_or(Operation::Set);
        m.operation = Some(op.to_proto() as i32);
        let rec = m.record.get_or_insert_with(Default::default);
        let plain = rec.value.take().and_then(|v| v.blob).unwrap_or_default();
        let index = wa::SyncActionData::decode(plain.as_slice())
            .ok()
            .and_then(|d| d.index)
            .unwrap_or_default();
        let mut blob = k.encrypt_value(&plain, [0x42; 16]);
        let vm = k.value_mac(op, &blob, KID);
        blob.extend_from_slice(&vm);
        rec.value = Some(wa::SyncdValue { blob: Some(blob) });
        rec.index = Some(wa::SyncdIndex {
            blob: Some(k.index_mac(&index).to_vec()),
        });
        rec.key_id = Some(wa::KeyId {
            id: Some(KID.to_vec()),
        });
        if op == Operation::Set {
            hash.add(&vm);
        }
        vms.push(vm);
    }
    let snapshot_mac = k.snapshot_mac(&hash, version, c);
    patch.patch_mac = Some(
        k.patch_mac(&snapshot_mac, vms.iter().map(|v| &v[..]), version, c)
            .to_vec(),
    );
    patch.snapshot_mac = Some(snapshot_mac.to_vec());
    patch.version = Some(wa::SyncdVersion {
        version: Some(version),
    });
    patch.key_id = Some(wa::KeyId {
        id: Some(KID.to_vec()),
    });
    patch.external_mutations = None;
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let c = Collection::ALL[usize::from(selector >> 4) % 5];
    let empty = CollectionState::default();
    match selector % 4 {
        0 => {
            if let Ok(p) = wa::SyncdPatch::decode(rest) {
                let _ = missing_keys(None, [&p], &keys);
                let _ = decode_patch(c, &empty, &p, &keys);
            }
        }
        1 => {
            if let Ok(s) = wa::SyncdSnapshot::decode(rest) {
                let _ = missing_keys(Some(&s), [], &keys);
                if let Ok(a) = decode_snapshot(c, &s, &keys) {
                    a.mutations
                        .iter()
                        .for_each(|m| drop(Action::from_mutation(m)));
                }
            }
        }
        2 => {
            if let Ok(r) = wa::SyncdSnapshotRecovery::decode(rest) {
                if let Ok(a) = decode_recovery(c, &r, &keys) {
                    a.mutations
                        .iter()
                        .for_each(|m| drop(Action::from_mutation(m)));
                }
            }
        }
        _ => {
            let Ok(mut p) = wa::SyncdPatch::decode(rest) else {
                return;
            };
            seal(&mut p, c, 1);
            if let Ok(a) = decode_patch(c, &empty, &p, &keys) {
                let mut s = empty.clone();
                s.apply(&a);
                let mut h = LtHash::default();
                s.macs.values().for_each(|v| h.add(v));
                assert_eq!(h, s.hash, "table and LTHash disagree");
                a.mutations
                    .iter()
                    .for_each(|m| drop(Action::from_mutation(m)));
            }
        }
    }
});
