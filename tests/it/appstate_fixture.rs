//! The app-state core against Baileys (`fixtures/baileys/appstate.json`, recorded by
//! `tools/fixtures/appstate.mjs`): Baileys' key expansion and LTHash, our decoder on the patches
//! its `encodeSyncdPatch` made and on a snapshot of its records (matching what its
//! `decodePatches` / `decodeSyncdSnapshot` read: values, MAC tables, LTHash, versions), and our
//! encoder, given the same IV, timestamp and prior state, producing Baileys' exact bytes. Every
//! expected value comes from the fixture.

use std::collections::HashMap;

use prost::Message;
use serde_json::Value;
use wa_gateway::appstate::encode::{self, message_range};
use wa_gateway::appstate::{
    Action, Applied, Collection, CollectionState, LtHash, MutationKeys, Operation, PendingMutation,
    decode_patch, decode_snapshot, encode_patch,
};
use wa_gateway::binary::Jid;
use wa_gateway::proto::wa;
use wa_gateway::util::hex;

use crate::common::{fixture, hex32, hexf};

fn appstate() -> Value {
    fixture("baileys/appstate.json")
}

/// The fixture's one key, as a lookup.
fn lookup(f: &Value) -> impl Fn(&[u8]) -> Option<MutationKeys> + use<> {
    let id = hexf(&f["key"], "key_id");
    let data = hexf(&f["key"], "key_data");
    move |k: &[u8]| (k == id).then(|| MutationKeys::expand(&data))
}

fn lt128(v: &Value) -> LtHash {
    let b = hex::decode(v.as_str().expect("hex")).expect("hex");
    LtHash(b.try_into().expect("128 bytes"))
}

/// A fixture state: version, hash and the index MAC → value MAC table.
fn state_of(v: &Value) -> CollectionState {
    let macs = v["index_value_map"]
        .as_object()
        .expect("map")
        .iter()
        .map(|(k, m)| {
            let k: [u8; 32] = hex::decode(k).unwrap().try_into().unwrap();
            let m: [u8; 32] = hex::decode(m.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            (k, m)
        })
        .collect::<HashMap<_, _>>();
    CollectionState {
        version: v["version"].as_u64().expect("version"),
        hash: lt128(&v["hash"]),
        macs,
    }
}

/// The state Baileys' encoder left after a step. For a REMOVE it keeps the removed index in its
/// table (chat-utils.js `encodeSyncdPatch` re-inserts `indexMac → valueMac` after its LTHash
/// generator deleted it, whatever the operation), while its decoder (`decodePatches`, checked
/// against the same sequence below) drops it, as we do: the hash and version agree either way.
fn result_of(step: &Value) -> CollectionState {
    let mut s = state_of(&step["result"]);
    if step["operation"] == "REMOVE" {
        let gone = s.macs.remove(&hex32(step, "index_mac"));
        assert!(gone.is_some(), "Baileys' encoder kept the removed index");
    }
    s
}

fn index_of(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("index array")
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn value_of(v: &Value) -> wa::SyncActionValue {
    wa::SyncActionValue::decode(hexf(v, "value_hex").as_slice()).expect("SyncActionValue")
}

/// The last decoded mutation of each index, as Baileys' mutationMap keeps them.
fn last_by_index(applied: &[Applied]) -> HashMap<Vec<String>, (Vec<u8>, Option<i32>)> {
    let mut out = HashMap::new();
    for a in applied {
        for m in &a.mutations {
            let value = m.data.value.clone().unwrap_or_default().encode_to_vec();
            out.insert(m.index.clone(), (value, m.data.version));
        }
    }
    out
}

fn assert_decoded_like_baileys(
    what: &str,
    decoded: &Value,
    ours: &CollectionState,
    applied: &[Applied],
) {
    assert_eq!(ours, &state_of(&decoded["state"]), "{what}: state");
    let last = last_by_index(applied);
    let theirs = decoded["mutations"].as_array().unwrap();
    assert!(!theirs.is_empty());
    for m in theirs {
        let index = index_of(&m["index"]);
        let (value, version) = last
            .get(&index)
            .unwrap_or_else(|| panic!("{what}: {index:?}"));
        assert_eq!(
            hex::encode(value),
            m["value_hex"].as_str().unwrap(),
            "{what}: {index:?}"
        );
        assert_eq!(
            version.map(i64::from),
            m["action_version"].as_i64(),
            "{what}: {index:?}"
        );
    }
}

#[test]
fn mutation_keys_match_baileys() {
    let f = appstate();
    let cases = f["mutation_keys"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for c in cases {
        let k = MutationKeys::expand(&hexf(c, "key_data"));
        assert_eq!(k.index, hex32(c, "index"));
        assert_eq!(k.value_encryption, hex32(c, "value_encryption"));
        assert_eq!(k.value_mac, hex32(c, "value_mac"));
        assert_eq!(k.snapshot_mac, hex32(c, "snapshot_mac"));
        assert_eq!(k.patch_mac, hex32(c, "patch_mac"));
    }
}

#[test]
fn lthash_matches_baileys() {
    let f = appstate();
    let cases = f["lthash"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let mut h = lt128(&c["base"]);
        let list = |k: &str| -> Vec<Vec<u8>> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|m| hex::decode(m.as_str().unwrap()).unwrap())
                .collect()
        };
        let (sub, add) = (list("subtract"), list("add"));
        h.subtract_then_add(sub.iter().map(|m| &m[..]), add.iter().map(|m| &m[..]));
        assert_eq!(h, lt128(&c["result"]));
    }
}

#[test]
fn our_decoder_reads_baileys_patches_as_baileys_does() {
    let f = appstate();
    let keys = lookup(&f);
    let sequences = f["sequences"].as_array().unwrap();
    assert_eq!(sequences.len(), 3);
    for seq in sequences {
        let c = Collection::from_name(seq["collection"].as_str().unwrap()).unwrap();
        let mut state = CollectionState::default();
        let mut applied = Vec::new();
        let steps = seq["steps"].as_array().unwrap();
        for (step, relayed) in steps.iter().zip(seq["relayed_hex"].as_array().unwrap()) {
            let name = step["name"].as_str().unwrap();
            assert_eq!(state, state_of(&step["prior"]), "{name}: prior");
            let bytes = hex::decode(relayed.as_str().unwrap()).unwrap();
            let patch = wa::SyncdPatch::decode(bytes.as_slice()).unwrap();
            let a =
                decode_patch(c, &state, &patch, &keys).unwrap_or_else(|e| panic!("{name}: {e}"));
            let m = &a.mutations[0];
            assert_eq!(m.index, index_of(&step["index"]), "{name}");
            let op = if step["operation"] == "SET" {
                Operation::Set
            } else {
                Operation::Remove
            };
            assert_eq!(m.operation, op, "{name}");
            assert_eq!(m.index_mac, hex32(step, "index_mac"), "{name}");
            assert_eq!(m.value_mac, hex32(step, "value_mac"), "{name}");
            assert_eq!(m.data.value.as_ref(), Some(&value_of(step)), "{name}");
            assert_eq!(
                m.data.version.map(i64::from),
                step["action_version"].as_i64(),
                "{name}"
            );
            state.apply(&a);
            assert_eq!(state, result_of(step), "{name}: result");
            applied.push(a);
        }
        assert_decoded_like_baileys(c.name(), &seq["decoded"], &state, &applied);
    }
}

#[test]
fn our_decoder_reads_a_snapshot_of_baileys_records_as_baileys_does() {
    let f = appstate();
    let snap = &f["snapshot"];
    let c = Collection::from_name(snap["collection"].as_str().unwrap()).unwrap();
    let bytes = hexf(snap, "hex");
    let s = wa::SyncdSnapshot::decode(bytes.as_slice()).unwrap();
    let a = decode_snapshot(c, &s, &lookup(&f)).unwrap();
    assert_eq!(a.version, snap["version"].as_u64().unwrap());
    let mut state = CollectionState::default();
    state.apply(&a);
    assert_decoded_like_baileys("snapshot", &snap["decoded"], &state, &[a]);
    // The snapshot MAC the fixture computed is the one our rule gives for Baileys' LTHash.
    let k = lookup(&f)(&hexf(&f["key"], "key_id")).unwrap();
    assert_eq!(
        k.snapshot_mac(&state.hash, state.version, c),
        hex32(snap, "mac")
    );
}

/// A patch of several mutations (a new index, an overwrite, a REMOVE, another new index) on a
/// base of two Baileys patches: our decoder reaches Baileys' state and reads the same mutations.
#[test]
fn our_decoder_reads_a_patch_of_several_mutations_as_baileys_does() {
    let f = appstate();
    let keys = lookup(&f);
    let multi = &f["multi"];
    let c = Collection::from_name(multi["collection"].as_str().unwrap()).unwrap();
    let mut state = CollectionState::default();
    for relayed in multi["base_relayed_hex"].as_array().unwrap() {
        let bytes = hex::decode(relayed.as_str().unwrap()).unwrap();
        let patch = wa::SyncdPatch::decode(bytes.as_slice()).unwrap();
        state.apply(&decode_patch(c, &state, &patch, &keys).unwrap());
    }
    assert_eq!(state, state_of(&multi["base"]), "base");
    let patch = wa::SyncdPatch::decode(hexf(multi, "hex").as_slice()).unwrap();
    let a = decode_patch(c, &state, &patch, &keys).unwrap();
    assert_eq!(
        a.mutations.len(),
        multi["names"].as_array().unwrap().len(),
        "one mutation per record, in order"
    );
    state.apply(&a);
    assert_decoded_like_baileys("multi", &multi["decoded"], &state, std::slice::from_ref(&a));
    assert_eq!(
        state,
        state_of(&multi["run_state"]),
        "the whole run from empty"
    );
}

/// Our encoder, given Baileys' input (index, value, action version, timestamp), its IV and the
/// prior state, makes the bytes Baileys sent: same field order, same JSON, same MACs.
#[test]
fn our_encoder_makes_baileys_bytes() {
    let f = appstate();
    let key_id = hexf(&f["key"], "key_id");
    let keys = lookup(&f)(&key_id).unwrap();
    let mut n = 0;
    for seq in f["sequences"].as_array().unwrap() {
        let c = Collection::from_name(seq["collection"].as_str().unwrap()).unwrap();
        for step in seq["steps"].as_array().unwrap() {
            let name = step["name"].as_str().unwrap();
            let prior = state_of(&step["prior"]);
            let mut value = value_of(step);
            // encode_patch sets the timestamp itself; the fixture's must be what we pass.
            let ts = step["timestamp_ms"].as_i64().unwrap();
            assert_eq!(value.timestamp, Some(ts));
            value.timestamp = None;
            let pending = PendingMutation {
                operation: if step["operation"] == "SET" {
                    Operation::Set
                } else {
                    Operation::Remove
                },
                index: index_of(&step["index"]),
                value,
                version: step["action_version"].as_i64().unwrap() as i32,
            };
            let iv: [u8; 16] = hexf(step, "iv").try_into().unwrap();
            let mut once = Some(iv);
            let (patch, a) = encode_patch(c, &prior, &key_id, &keys, &[pending], ts, &mut || {
                once.take().expect("one IV per record")
            });
            assert_eq!(
                hex::encode(&patch.encode_to_vec()),
                step["encoded_hex"].as_str().unwrap(),
                "{name}"
            );
            let mut after = prior.clone();
            after.apply(&a);
            assert_eq!(after, result_of(step), "{name}");
            n += 1;
        }
    }
    assert_eq!(n, 8);
}

/// Our builders make the values Baileys' chatModificationToAppPatch makes, except where we
/// follow whatsmeow on purpose: archiving also unpins, and a message range's messages carry
/// their timestamp (Baileys passes WAMessage objects whose `messageTimestamp` protobufjs drops).
#[test]
fn our_builders_make_baileys_values() {
    let f = appstate();
    let steps: HashMap<String, Value> = f["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap().clone())
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s))
        .collect();
    let built = |name: &str, (c, muts): (Collection, Vec<PendingMutation>)| {
        let step = &steps[name];
        let mut want = value_of(step);
        want.timestamp = None;
        let m = &muts[0];
        assert_eq!(m.index, index_of(&step["index"]), "{name}");
        assert_eq!(
            i64::from(m.version),
            step["action_version"].as_i64().unwrap(),
            "{name}"
        );
        let c_name = f["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == name)
            })
            .unwrap()["collection"]
            .as_str()
            .unwrap();
        assert_eq!(c.name(), c_name, "{name}");
        (m.value.clone(), want, muts)
    };
    let jid = |s: &Value| -> Jid { s["index"][1].as_str().unwrap().parse().unwrap() };

    let mute = &steps["mute"];
    let until = value_of(mute).mute_action.unwrap().mute_end_timestamp;
    let (ours, want, _) = built("mute", encode::mute(&jid(mute), until));
    assert_eq!(ours, want);
    let (ours, want, _) = built("unmute", encode::mute(&jid(&steps["unmute"]), None));
    assert_eq!(ours, want);
    let (ours, want, _) = built("pin", encode::pin(&jid(&steps["pin"]), true));
    assert_eq!(ours, want);
    let contact = value_of(&steps["contact"]).contact_action;
    let (ours, want, _) = built("contact", encode::contact(&jid(&steps["contact"]), contact));
    assert_eq!(ours, want);
    let (ours, want, muts) = built(
        "contact_remove",
        encode::contact(&jid(&steps["contact_remove"]), None),
    );
    assert_eq!((ours, muts[0].operation), (want, Operation::Remove));

    // archive and markRead: same value once the per-message timestamp is dropped.
    let range_of = |v: &wa::SyncActionValue| {
        v.archive_chat_action
            .as_ref()
            .and_then(|a| a.message_range.clone())
            .or_else(|| {
                v.mark_chat_as_read_action
                    .as_ref()
                    .and_then(|a| a.message_range.clone())
            })
            .unwrap()
    };
    for (name, archived) in [
        ("archive", Some(true)),
        ("unarchive", Some(false)),
        ("mark_read", None),
    ] {
        let theirs = range_of(&value_of(&steps[name]));
        let key = theirs.messages[0].key.clone();
        let ts = theirs.last_message_timestamp.unwrap();
        assert_eq!(theirs.messages[0].timestamp, None, "Baileys drops it");
        let chat = jid(&steps[name]);
        let made = match archived {
            Some(a) => encode::archive(&chat, a, message_range(ts, key)),
            None => encode::mark_read(&chat, false, message_range(ts, key)),
        };
        let (mut ours, want, muts) = built(name, made);
        let mut r = range_of(&ours);
        assert_eq!(r.messages[0].timestamp, Some(ts), "whatsmeow sets it");
        r.messages[0].timestamp = None;
        if let Some(a) = ours.archive_chat_action.as_mut() {
            a.message_range = Some(r);
        } else if let Some(a) = ours.mark_chat_as_read_action.as_mut() {
            a.message_range = Some(r);
        }
        assert_eq!(ours, want, "{name}");
        assert_eq!(
            muts.len(),
            if archived == Some(true) { 2 } else { 1 },
            "{name}"
        );
    }
}

/// What the gateway makes of Baileys' mutations.
#[test]
fn baileys_mutations_read_as_actions() {
    let f = appstate();
    let keys = lookup(&f);
    let mut seen = Vec::new();
    for seq in f["sequences"].as_array().unwrap() {
        let c = Collection::from_name(seq["collection"].as_str().unwrap()).unwrap();
        let mut state = CollectionState::default();
        for (step, relayed) in seq["steps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(seq["relayed_hex"].as_array().unwrap())
        {
            let patch =
                wa::SyncdPatch::decode(hex::decode(relayed.as_str().unwrap()).unwrap().as_slice())
                    .unwrap();
            let a = decode_patch(c, &state, &patch, &keys).unwrap();
            state.apply(&a);
            let v = &step["value_json"];
            let chat: Jid = step["index"][1].as_str().unwrap().parse().unwrap();
            let want = match step["name"].as_str().unwrap() {
                "archive" | "unarchive" => Action::Archive {
                    chat,
                    archived: v["archiveChatAction"]["archived"].as_bool().unwrap(),
                },
                "pin" => Action::Pin {
                    chat,
                    pinned: v["pinAction"]["pinned"].as_bool().unwrap(),
                },
                "mark_read" => Action::MarkRead {
                    chat,
                    read: v["markChatAsReadAction"]["read"].as_bool().unwrap(),
                },
                "mute" => Action::Mute {
                    chat,
                    until_ms: v["muteAction"]["muteEndTimestamp"]
                        .as_str()
                        .map(|s| s.parse().unwrap()),
                },
                "unmute" => Action::Mute {
                    chat,
                    until_ms: None,
                },
                "contact" => Action::Contact {
                    jid: chat,
                    full_name: v["contactAction"]["fullName"].as_str().map(Into::into),
                    first_name: v["contactAction"]["firstName"].as_str().map(Into::into),
                    lid: v["contactAction"]["lidJid"]
                        .as_str()
                        .map(|s| s.parse().unwrap()),
                    pn: None,
                    username: None,
                },
                "contact_remove" => Action::ContactRemoved { jid: chat },
                other => panic!("unexpected step {other}"),
            };
            assert_eq!(Action::from_mutation(&a.mutations[0]), want);
            seen.push(want);
        }
    }
    assert_eq!(seen.len(), 8);
}
