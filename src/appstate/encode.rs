//! Encoding our own patches and, for the simulator, snapshots (CLIENT-FEATURES §3.6; whatsmeow
//! `appstate/encode.go` `EncodePatch`, Baileys `encodeSyncdPatch`), and the index/action
//! builders for what the gateway sends, with the collection and action version of the §3.6
//! table. IVs come from the caller so tests and fixtures are deterministic.

use prost::Message;

use super::collection::Collection;
use super::decode::{Applied, Folded, Mutation, fold};
use super::keys::MutationKeys;
use super::lthash::LtHash;
use super::state::{CollectionState, Operation};
use crate::binary::Jid;
use crate::proto::wa;

/// One mutation to encode.
#[derive(Clone, PartialEq)]
pub struct PendingMutation {
    /// SET or REMOVE.
    pub operation: Operation,
    /// The index strings (encoded as a JSON array).
    pub index: Vec<String>,
    /// The action (its `timestamp` is set by [`encode_patch`]).
    pub value: wa::SyncActionValue,
    /// The action version (`SyncActionData.version`, §3.6 table).
    pub version: i32,
}

/// Debug shows the operation and the index only: the value may carry a salt.
impl std::fmt::Debug for PendingMutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingMutation")
            .field("operation", &self.operation)
            .field("index", &self.index)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Encrypts and MACs one record; returns the wire record and the decoded mutation it stands for.
fn encode_record(
    p: &PendingMutation,
    key_id: &[u8],
    keys: &MutationKeys,
    iv: &mut impl FnMut() -> [u8; 16],
) -> (wa::SyncdRecord, Mutation) {
    // serde_json writes a Vec<String> as a compact array, as Go's json.Marshal and JS's
    // JSON.stringify do (both escape the same for the ASCII of JIDs and ids).
    let index_json = serde_json::to_vec(&p.index).unwrap_or_default();
    let data = wa::SyncActionData {
        index: Some(index_json.clone()),
        value: Some(p.value.clone()),
        padding: Some(Vec::new()),
        version: Some(p.version),
    };
    let raw = data.encode_to_vec();
    let mut blob = keys.encrypt_value(&raw, iv());
    let value_mac = keys.value_mac(p.operation, &blob, key_id);
    let index_mac = keys.index_mac(&index_json);
    blob.extend_from_slice(&value_mac);
    let record = wa::SyncdRecord {
        index: Some(wa::SyncdIndex {
            blob: Some(index_mac.to_vec()),
        }),
        value: Some(wa::SyncdValue { blob: Some(blob) }),
        key_id: Some(wa::KeyId {
            id: Some(key_id.to_vec()),
        }),
    };
    let m = Mutation {
        operation: p.operation,
        index: p.index.clone(),
        index_mac,
        value_mac,
        key_id: key_id.to_vec(),
        data,
        raw,
    };
    (record, m)
}

/// Builds the patch we send: each value's timestamp set to `now_ms`, a fresh IV per record from
/// `iv`, the LTHash moved on from `state` by the same rule the decoder uses, version = local + 1
/// for the MACs, and **no version field** on the wire (whatsmeow `EncodePatch`). Also returns
/// what applying it does, for storing once the server accepts it.
///
/// Repeating an index within one operation is the caller's mistake (the server refuses such a
/// patch); the builders never do it.
pub fn encode_patch(
    c: Collection,
    state: &CollectionState,
    key_id: &[u8],
    keys: &MutationKeys,
    muts: &[PendingMutation],
    now_ms: i64,
    iv: &mut impl FnMut() -> [u8; 16],
) -> (wa::SyncdPatch, Applied) {
    let mut wire = Vec::with_capacity(muts.len());
    let mut mutations = Vec::with_capacity(muts.len());
    for p in muts {
        let mut p = p.clone();
        p.value.timestamp = Some(now_ms);
        let (record, m) = encode_record(&p, key_id, keys, iv);
        wire.push(wa::SyncdMutation {
            operation: Some(p.operation.to_proto() as i32),
            record: Some(record),
        });
        mutations.push(m);
    }
    let version = state.version + 1;
    let (hash, added, removed) = match fold(state, &mutations) {
        Ok(f) => f,
        // Duplicate indices: count them the way whatsmeow would rather than fail an encoder
        // with no error path; the server will refuse the patch and the client re-syncs.
        Err(_) => fold_plain(state, &mutations),
    };
    let snapshot_mac = keys.snapshot_mac(&hash, version, c);
    let patch_mac = keys.patch_mac(
        &snapshot_mac,
        mutations.iter().map(|m| &m.value_mac[..]),
        version,
        c,
    );
    let patch = wa::SyncdPatch {
        mutations: wire,
        snapshot_mac: Some(snapshot_mac.to_vec()),
        patch_mac: Some(patch_mac.to_vec()),
        key_id: Some(wa::KeyId {
            id: Some(key_id.to_vec()),
        }),
        ..Default::default()
    };
    let applied = Applied {
        collection: c,
        version,
        hash,
        replaces: false,
        added,
        removed,
        mutations,
    };
    (patch, applied)
}

/// The in-order count for a patch [`fold`] refuses: each SET adds, each mutation subtracts
/// what the running table held.
fn fold_plain(state: &CollectionState, mutations: &[Mutation]) -> Folded {
    let mut table = state.macs.clone();
    let mut hash = state.hash;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for m in mutations {
        if let Some(prev) = table.remove(&m.index_mac) {
            hash.subtract(&prev);
        }
        match m.operation {
            Operation::Set => {
                hash.add(&m.value_mac);
                table.insert(m.index_mac, m.value_mac);
                added.push((m.index_mac, m.value_mac));
            }
            Operation::Remove => removed.push(m.index_mac),
        }
    }
    (hash, added, removed)
}

/// Builds a snapshot of `records` (all SETs, values as given) at `version`, as the server
/// serves one (used by the simulator). Returns it and what applying it does.
pub fn encode_snapshot(
    c: Collection,
    version: u64,
    records: &[PendingMutation],
    key_id: &[u8],
    keys: &MutationKeys,
    iv: &mut impl FnMut() -> [u8; 16],
) -> (wa::SyncdSnapshot, Applied) {
    let mut wire = Vec::with_capacity(records.len());
    let mut mutations = Vec::with_capacity(records.len());
    let mut hash = LtHash::default();
    for p in records {
        let p = PendingMutation {
            operation: Operation::Set,
            ..p.clone()
        };
        let (record, m) = encode_record(&p, key_id, keys, iv);
        hash.add(&m.value_mac);
        wire.push(record);
        mutations.push(m);
    }
    let mac = keys.snapshot_mac(&hash, version, c);
    let snap = wa::SyncdSnapshot {
        version: Some(wa::SyncdVersion {
            version: Some(version),
        }),
        records: wire,
        mac: Some(mac.to_vec()),
        key_id: Some(wa::KeyId {
            id: Some(key_id.to_vec()),
        }),
    };
    let applied = Applied {
        collection: c,
        version,
        hash,
        replaces: true,
        added: mutations
            .iter()
            .map(|m| (m.index_mac, m.value_mac))
            .collect(),
        removed: Vec::new(),
        mutations,
    };
    (snap, applied)
}

fn set(index: Vec<String>, version: i32, value: wa::SyncActionValue) -> PendingMutation {
    PendingMutation {
        operation: Operation::Set,
        index,
        value,
        version,
    }
}

/// A message range for archive, mark-read and delete-chat (whatsmeow `newMessageRange`: the
/// last message's timestamp in **seconds**, and its key when known).
pub fn message_range(
    last_message_ts_s: i64,
    last_key: Option<wa::MessageKey>,
) -> wa::SyncActionMessageRange {
    wa::SyncActionMessageRange {
        last_message_timestamp: Some(last_message_ts_s),
        last_system_message_timestamp: None,
        messages: last_key
            .map(|key| wa::SyncActionMessage {
                key: Some(key),
                timestamp: Some(last_message_ts_s),
            })
            .into_iter()
            .collect(),
    }
}

/// `["mute", chat]`, regular_high, v2. `until_ms`: `Some(t)` mutes until t (ms), `Some(-1)`
/// forever (whatsmeow `BuildMuteAbs`); `None` unmutes (muted = false, no end).
pub fn mute(chat: &Jid, until_ms: Option<i64>) -> (Collection, Vec<PendingMutation>) {
    let action = wa::MuteAction {
        muted: Some(until_ms.is_some()),
        mute_end_timestamp: until_ms,
        ..Default::default()
    };
    let value = wa::SyncActionValue {
        mute_action: Some(action),
        ..Default::default()
    };
    (
        Collection::RegularHigh,
        vec![set(vec!["mute".into(), chat.to_string()], 2, value)],
    )
}

/// `["pin_v1", chat]`, regular_low, v5.
fn pin_mutation(chat: &Jid, pinned: bool) -> PendingMutation {
    let value = wa::SyncActionValue {
        pin_action: Some(wa::PinAction {
            pinned: Some(pinned),
        }),
        ..Default::default()
    };
    set(vec!["pin_v1".into(), chat.to_string()], 5, value)
}

/// Pins or unpins a chat: `["pin_v1", chat]`, regular_low, v5.
pub fn pin(chat: &Jid, pinned: bool) -> (Collection, Vec<PendingMutation>) {
    (Collection::RegularLow, vec![pin_mutation(chat, pinned)])
}

/// Archives or unarchives a chat: `["archive", chat]`, regular_low, v3, with the message
/// range; archiving also unpins (`pin_v1` = false in the same patch, whatsmeow `BuildArchive`).
pub fn archive(
    chat: &Jid,
    archived: bool,
    range: wa::SyncActionMessageRange,
) -> (Collection, Vec<PendingMutation>) {
    let value = wa::SyncActionValue {
        archive_chat_action: Some(wa::ArchiveChatAction {
            archived: Some(archived),
            message_range: Some(range),
        }),
        ..Default::default()
    };
    let mut muts = vec![set(vec!["archive".into(), chat.to_string()], 3, value)];
    if archived {
        muts.push(pin_mutation(chat, false));
    }
    (Collection::RegularLow, muts)
}

/// Marks a chat read or unread: `["markChatAsRead", chat]`, regular_low, v3.
pub fn mark_read(
    chat: &Jid,
    read: bool,
    range: wa::SyncActionMessageRange,
) -> (Collection, Vec<PendingMutation>) {
    let value = wa::SyncActionValue {
        mark_chat_as_read_action: Some(wa::MarkChatAsReadAction {
            read: Some(read),
            message_range: Some(range),
        }),
        ..Default::default()
    };
    (
        Collection::RegularLow,
        vec![set(
            vec!["markChatAsRead".into(), chat.to_string()],
            3,
            value,
        )],
    )
}

/// Saves a contact: `["contact", jid]`, critical_unblock_low, v2, with the given action
/// (fullName, firstName, lidJID, saveOnPrimaryAddressbook, pnJID, username); `None` removes it
/// (a REMOVE, as Baileys sends for `contact: null`).
pub fn contact(jid: &Jid, action: Option<wa::ContactAction>) -> (Collection, Vec<PendingMutation>) {
    let operation = if action.is_some() {
        Operation::Set
    } else {
        Operation::Remove
    };
    let value = wa::SyncActionValue {
        contact_action: Some(action.unwrap_or_default()),
        ..Default::default()
    };
    (
        Collection::CriticalUnblockLow,
        vec![PendingMutation {
            operation,
            index: vec!["contact".into(), jid.to_string()],
            value,
            version: 2,
        }],
    )
}

/// Sets (`Some(salt)`) or removes (`None`) the NCT salt: `["nct_salt_sync"]`, regular_high, v1.
pub fn nct_salt(salt: Option<&[u8]>) -> (Collection, Vec<PendingMutation>) {
    let value = wa::SyncActionValue {
        nct_salt_sync_action: Some(wa::NctSaltSyncAction {
            salt: salt.map(<[u8]>::to_vec),
        }),
        ..Default::default()
    };
    (
        Collection::RegularHigh,
        vec![PendingMutation {
            operation: if salt.is_some() {
                Operation::Set
            } else {
                Operation::Remove
            },
            index: vec!["nct_salt_sync".into()],
            value,
            version: 1,
        }],
    )
}

/// Deletes a chat: `["deleteChat", chat, "1"/"0" deleteMedia]`, regular_high, v6 (whatsmeow
/// `BuildDeleteChat`).
pub fn delete_chat(
    chat: &Jid,
    delete_media: bool,
    range: wa::SyncActionMessageRange,
) -> (Collection, Vec<PendingMutation>) {
    let value = wa::SyncActionValue {
        delete_chat_action: Some(wa::DeleteChatAction {
            message_range: Some(range),
        }),
        ..Default::default()
    };
    let flag = if delete_media { "1" } else { "0" };
    (
        Collection::RegularHigh,
        vec![set(
            vec!["deleteChat".into(), chat.to_string(), flag.into()],
            6,
            value,
        )],
    )
}
