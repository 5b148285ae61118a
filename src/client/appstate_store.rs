//! What the client keeps of app-state sync (CLIENT-FEATURES §3), and the storage trait for it:
//! the sync keys the phone shared, and per collection the verified version, LTHash and live
//! records. A collection moves only by [`AppStateStore::commit_app_state`], which lands its
//! version, hash and records in one unit, so a crash between applying a patch and storing its
//! version cannot happen: either both are stored or the patch is fetched again.

use std::collections::HashMap;
use std::future::Future;

use super::store::CredsStoreError;

/// An app-state sync key the phone shared (`AppStateSyncKey`). `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AppStateKey {
    /// The key's id (`AppStateSyncKeyId.keyID`).
    pub id: Vec<u8>,
    /// The 32-byte key data the mutation keys expand from.
    pub data: zeroize::Zeroizing<[u8; 32]>,
    /// When the phone made it (ms); the newest is the one we send with.
    pub created: i64,
}

impl std::fmt::Debug for AppStateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateKey")
            .field("id", &crate::util::hex::encode(&self.id))
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A collection as we last verified it.
#[derive(Clone, PartialEq, Eq)]
pub struct CollectionVersion {
    /// The version of its last applied patch or snapshot.
    pub version: u64,
    /// Its LTHash then.
    pub hash: [u8; 128],
}

impl std::fmt::Debug for CollectionVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionVersion")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One live record of a collection.
#[derive(Clone, PartialEq, Eq)]
pub struct AppStateRecord {
    /// HMAC of the index under the index key: the record's identity.
    pub index_mac: [u8; 32],
    /// The value MAC the LTHash adds.
    pub value_mac: [u8; 32],
    /// The index, as the JSON array it was sent as.
    pub index: String,
    /// The decrypted `SyncActionData` (kept raw, so actions we do not act on yet are not lost).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for AppStateRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The index names a chat or contact; the data may hold a salt: neither is printed.
        f.debug_struct("AppStateRecord")
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// What applying a verified patch, snapshot or recovery does to a collection, stored at once.
/// `Debug` gives counts only (the salt is a secret; records name chats).
#[derive(Clone, PartialEq, Eq)]
pub struct AppStateCommit {
    /// The collection's name.
    pub collection: String,
    /// Its new version and hash.
    pub state: CollectionVersion,
    /// A snapshot or recovery: every record stored before is dropped first.
    pub replace: bool,
    /// Index MACs no longer live.
    pub removed: Vec<[u8; 32]>,
    /// Records set (a record set again replaces the stored one).
    pub added: Vec<AppStateRecord>,
    /// What the mutations did to chats (archive, pin, mute, read, delete).
    pub chats: Vec<crate::client::account::ChatChange>,
    /// What they did to contacts (names).
    pub contacts: Vec<crate::client::account::ContactChange>,
    /// An `nct_salt_sync` mutation: Some(Some) set, Some(None) removed.
    pub nct_salt: Option<Option<Vec<u8>>>,
}

impl std::fmt::Debug for AppStateCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateCommit")
            .field("collection", &self.collection)
            .field("version", &self.state.version)
            .field("replace", &self.replace)
            .field("removed", &self.removed.len())
            .field("added", &self.added.len())
            .field("chats", &self.chats.len())
            .field("contacts", &self.contacts.len())
            .field(
                "nct_salt_change",
                &self.nct_salt.as_ref().map(|s| s.is_some()),
            )
            .finish()
    }
}

/// App-state persistence of one account.
pub trait AppStateStore: Send + Sync {
    /// Stores keys the phone shared; returns how many were new.
    fn add_app_state_keys(
        &self,
        keys: &[AppStateKey],
    ) -> impl Future<Output = Result<usize, CredsStoreError>> + Send;
    /// The key with this id, if shared.
    fn app_state_key(
        &self,
        id: &[u8],
    ) -> impl Future<Output = Result<Option<AppStateKey>, CredsStoreError>> + Send;
    /// The newest key (by the phone's time), to send patches with.
    fn latest_app_state_key(
        &self,
    ) -> impl Future<Output = Result<Option<AppStateKey>, CredsStoreError>> + Send;
    /// A collection's verified version and hash; `None` before its first snapshot.
    fn app_state_version(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<Option<CollectionVersion>, CredsStoreError>> + Send;
    /// The value MACs stored for these index MACs (those live).
    fn value_macs(
        &self,
        collection: &str,
        index_macs: &[[u8; 32]],
    ) -> impl Future<Output = Result<HashMap<[u8; 32], [u8; 32]>, CredsStoreError>> + Send;
    /// The live records whose index starts with these elements (e.g. `["mute", chat]`).
    fn app_state_records(
        &self,
        collection: &str,
        index_prefix: &[&str],
    ) -> impl Future<Output = Result<Vec<AppStateRecord>, CredsStoreError>> + Send;
    /// Stores a collection's new version, hash and records in one unit. Returns the chat
    /// flags a replacing commit cleared in that unit ([`flags_dropped_by`]: records it no
    /// longer holds), for the caller to announce.
    fn commit_app_state(
        &self,
        commit: &AppStateCommit,
    ) -> impl Future<Output = Result<Vec<crate::client::account::ChatChange>, CredsStoreError>> + Send;
    /// Forgets a collection (version, hash and records), so the next sync asks for a
    /// snapshot: how a collection that failed verification starts over.
    fn reset_app_state(
        &self,
        collection: &str,
    ) -> impl Future<Output = Result<(), CredsStoreError>> + Send;
}

/// Index kinds whose record sets a chat flag (mute, archive, pin, marked unread): their
/// record going away (a REMOVE, or a snapshot that no longer holds it) clears the flag.
pub const CHAT_FLAG_KINDS: [&str; 4] = ["mute", "archive", "pin_v1", "markChatAsRead"];

/// What a chat-flag record's going away undoes (the chat is no longer muted, archived, pinned
/// or marked unread); None for an index that sets no chat flag. It changes a stored chat only:
/// a flag cleared on a chat we never had makes no empty row.
pub fn flag_cleared(index: &[String]) -> Option<crate::client::account::ChatChange> {
    use crate::client::account::ChatChange;
    let kind = index.first()?;
    let chat: crate::binary::Jid = index.get(1)?.parse().ok()?;
    let base = ChatChange {
        chat: chat.to_non_ad(),
        only_if_stored: true,
        ..ChatChange::default()
    };
    Some(match kind.as_str() {
        "mute" => ChatChange {
            muted_until: Some(None),
            ..base
        },
        "archive" => ChatChange {
            archived: Some(false),
            ..base
        },
        "pin_v1" => ChatChange {
            pinned: Some(None),
            ..base
        },
        "markChatAsRead" => ChatChange {
            marked_unread: Some(false),
            ..base
        },
        _ => return None,
    })
}

/// The chat flags a replacing commit clears: those set by records of `old` (stored before)
/// that the new state no longer holds (a snapshot replaces the collection whole, so a flag
/// whose record is absent from it is off, CLIENT-FEATURES §3).
pub fn flags_dropped_by<'a>(
    old: impl IntoIterator<Item = (&'a [u8; 32], &'a str)>,
    commit: &AppStateCommit,
) -> Vec<crate::client::account::ChatChange> {
    let kept: std::collections::HashSet<&[u8; 32]> =
        commit.added.iter().map(|r| &r.index_mac).collect();
    old.into_iter()
        .filter(|(mac, _)| !kept.contains(mac))
        .filter_map(|(_, idx)| flag_cleared(&serde_json::from_str::<Vec<String>>(idx).ok()?))
        .collect()
}

/// The JSON text every index with these leading elements starts with: `["mute","x@s.whatsapp.net"`
/// prefixes every `["mute","x@s.whatsapp.net", …]`. Indexes are JSON arrays of strings encoded
/// without spaces, as every client sends them (whatsmeow `json.Marshal`, WA Web `JSON.stringify`).
pub fn index_prefix(elements: &[&str]) -> String {
    let mut s = String::from("[");
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::Value::String((*e).to_owned()).to_string());
    }
    s
}

/// App-state kept in memory (for [`super::store::MemoryCreds`]).
#[derive(Default)]
pub(super) struct MemoryAppState {
    keys: Vec<AppStateKey>,
    collections: HashMap<String, (CollectionVersion, HashMap<[u8; 32], AppStateRecord>)>,
}

impl MemoryAppState {
    pub(super) fn add_keys(&mut self, keys: &[AppStateKey]) -> usize {
        let mut new = 0;
        for k in keys {
            if !self.keys.iter().any(|have| have.id == k.id) {
                self.keys.push(k.clone());
                new += 1;
            }
        }
        new
    }

    pub(super) fn key(&self, id: &[u8]) -> Option<AppStateKey> {
        self.keys.iter().find(|k| k.id == id).cloned()
    }

    pub(super) fn latest_key(&self) -> Option<AppStateKey> {
        self.keys.iter().max_by_key(|k| k.created).cloned()
    }

    pub(super) fn version(&self, c: &str) -> Option<CollectionVersion> {
        self.collections.get(c).map(|(v, _)| v.clone())
    }

    pub(super) fn value_macs(
        &self,
        c: &str,
        index_macs: &[[u8; 32]],
    ) -> HashMap<[u8; 32], [u8; 32]> {
        let Some((_, records)) = self.collections.get(c) else {
            return HashMap::new();
        };
        index_macs
            .iter()
            .filter_map(|i| records.get(i).map(|r| (*i, r.value_mac)))
            .collect()
    }

    pub(super) fn records(&self, c: &str, prefix: &[&str]) -> Vec<AppStateRecord> {
        let p = index_prefix(prefix);
        self.collections
            .get(c)
            .map(|(_, records)| {
                records
                    .values()
                    .filter(|r| r.index.starts_with(&p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The chat flags `commit` clears when it replaces its collection ([`flags_dropped_by`]).
    pub(super) fn flags_dropped(
        &self,
        commit: &AppStateCommit,
    ) -> Vec<crate::client::account::ChatChange> {
        match (commit.replace, self.collections.get(&commit.collection)) {
            (true, Some((_, records))) => flags_dropped_by(
                records.values().map(|r| (&r.index_mac, r.index.as_str())),
                commit,
            ),
            _ => Vec::new(),
        }
    }

    pub(super) fn commit(&mut self, commit: &AppStateCommit) {
        let entry = self
            .collections
            .entry(commit.collection.clone())
            .or_insert_with(|| (commit.state.clone(), HashMap::new()));
        if commit.replace {
            entry.1.clear();
        }
        for r in &commit.removed {
            entry.1.remove(r);
        }
        for r in &commit.added {
            entry.1.insert(r.index_mac, r.clone());
        }
        entry.0 = commit.state.clone();
    }

    pub(super) fn reset(&mut self, c: &str) {
        self.collections.remove(c);
    }

    pub(super) fn wipe(&mut self) {
        *self = MemoryAppState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_prefix_matches_the_indexes_it_starts() {
        let p = index_prefix(&["mute", "1@s.whatsapp.net"]);
        assert!(r#"["mute","1@s.whatsapp.net"]"#.starts_with(&p));
        assert!(!r#"["mute","12@s.whatsapp.net"]"#.starts_with(&p));
        // A quote in an element is escaped as JSON escapes it.
        assert_eq!(index_prefix(&["a\"b"]), r#"["a\"b""#);
    }

    #[test]
    fn a_key_prints_its_id_not_its_data() {
        let k = AppStateKey {
            id: vec![0xab, 0xcd],
            data: zeroize::Zeroizing::new([7u8; 32]),
            created: 5,
        };
        let s = format!("{k:?}");
        assert!(s.contains("abcd"));
        assert!(!s.contains("7, 7"));
    }
}
