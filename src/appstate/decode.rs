//! Decoding and verifying what the server sends (CLIENT-FEATURES §3.4, §3.5, §3.7): snapshots,
//! patches and the primary's recovery copy. Each is verified whole (every value MAC, index MAC,
//! the LTHash through the snapshot MAC, the patch MAC) before anything is returned, and any
//! failure refuses the whole input (Appendix A "bad record in patch": whatsmeow and whatsapp-rust
//! fail the patch, Baileys skips the record; we fail, and the client then fetches a snapshot).
//! Inputs are capped so a hostile patch costs memory in proportion to its size only.

use prost::Message;

use super::collection::Collection;
use super::error::{AppStateError, KeyId};
use super::keys::{IV_LEN, MAC_LEN, MutationKeys};
use super::lthash::{LTHASH_LEN, LtHash};
use super::state::{CollectionState, Operation};
use crate::proto::wa;

/// Most records in one snapshot, patch or recovery copy.
pub const MAX_RECORDS: usize = 100_000;
/// Longest index JSON, in bytes (real ones are under 200: `["star", chat, id, "1", "0"]`).
pub const MAX_INDEX_LEN: usize = 4096;
/// Most strings in one index (the longest known, a message label, has 6).
pub const MAX_INDEX_PARTS: usize = 32;
/// Largest value blob (IV ‖ ciphertext ‖ MAC), in bytes.
pub const MAX_VALUE_LEN: usize = 256 * 1024;

/// Where the decoders find the mutation keys of a key id (the client's key store; the
/// simulator's per-account keys).
pub trait KeyLookup {
    /// The expanded keys of `key_id`, if that key is known.
    fn keys(&self, key_id: &[u8]) -> Option<MutationKeys>;
}

impl KeyLookup for std::collections::HashMap<Vec<u8>, MutationKeys> {
    fn keys(&self, key_id: &[u8]) -> Option<MutationKeys> {
        self.get(key_id).cloned()
    }
}

impl<F: Fn(&[u8]) -> Option<MutationKeys>> KeyLookup for F {
    fn keys(&self, key_id: &[u8]) -> Option<MutationKeys> {
        self(key_id)
    }
}

/// One verified, decrypted mutation.
#[derive(Clone, PartialEq)]
pub struct Mutation {
    /// SET or REMOVE (snapshot and recovery records are SETs).
    pub operation: Operation,
    /// The index, a JSON array of strings such as `["mute", "123@s.whatsapp.net"]`.
    pub index: Vec<String>,
    /// HMAC of the index JSON: the record's identity in the collection.
    pub index_mac: [u8; 32],
    /// The value MAC (the record's contribution to the LTHash).
    pub value_mac: [u8; 32],
    /// The key the record was encrypted with.
    pub key_id: Vec<u8>,
    /// The decrypted `SyncActionData` (index, value, padding, action version).
    pub data: wa::SyncActionData,
    /// The `SyncActionData` bytes as decrypted, for storing records by index.
    pub raw: Vec<u8>,
}

/// Debug shows the operation and the index only: the value may carry a salt (`nct_salt_sync`).
impl std::fmt::Debug for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutation")
            .field("operation", &self.operation)
            .field("index", &self.index)
            .field("version", &self.data.version)
            .finish_non_exhaustive()
    }
}

/// What applying a verified snapshot, patch or recovery copy does to a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The collection.
    pub collection: Collection,
    /// The new version.
    pub version: u64,
    /// The new LTHash (already checked against the snapshot MAC, or the recovery hash).
    pub hash: LtHash,
    /// True for a snapshot or recovery copy: the MAC table is replaced, not updated.
    pub replaces: bool,
    /// (index MAC, value MAC) pairs to insert.
    pub added: Vec<([u8; 32], [u8; 32])>,
    /// Index MACs to delete (before inserting `added`).
    pub removed: Vec<[u8; 32]>,
    /// The mutations, in wire order.
    pub mutations: Vec<Mutation>,
}

/// Verifies and decrypts one record under `keys` (§3.4): value MAC over IV ‖ ciphertext, then
/// AES-256-CBC, then the index MAC and the index JSON.
fn decode_record(
    op: Operation,
    record: &wa::SyncdRecord,
    keys: &MutationKeys,
    key_id: &[u8],
) -> Result<Mutation, AppStateError> {
    let index_blob = record
        .index
        .as_ref()
        .and_then(|i| i.blob.as_deref())
        .ok_or(AppStateError::Malformed("record without index"))?;
    let blob = record
        .value
        .as_ref()
        .and_then(|v| v.blob.as_deref())
        .ok_or(AppStateError::Malformed("record without value"))?;
    if blob.len() > MAX_VALUE_LEN {
        return Err(AppStateError::TooLarge("value"));
    }
    if blob.len() < MAC_LEN + IV_LEN + 16 {
        return Err(AppStateError::Truncated);
    }
    let (enc, mac) = blob.split_at(blob.len() - MAC_LEN);
    let value_mac: [u8; 32] = mac.try_into().map_err(|_| AppStateError::Truncated)?;
    if !ct_eq(&keys.value_mac(op, enc, key_id), &value_mac) {
        return Err(AppStateError::BadValueMac);
    }
    let raw = keys.decrypt_value(enc)?;
    let data = wa::SyncActionData::decode(raw.as_slice())
        .map_err(|_| AppStateError::Malformed("SyncActionData"))?;
    let index_json = data
        .index
        .as_deref()
        .ok_or(AppStateError::Malformed("SyncActionData without index"))?;
    let index_mac = keys.index_mac(index_json);
    if !ct_eq(&index_mac, index_blob) {
        return Err(AppStateError::BadIndexMac);
    }
    let index = parse_index(index_json)?;
    Ok(Mutation {
        operation: op,
        index,
        index_mac,
        value_mac,
        key_id: key_id.to_vec(),
        data,
        raw,
    })
}

/// Parses an index: a JSON array of at most [`MAX_INDEX_PARTS`] strings, at most
/// [`MAX_INDEX_LEN`] bytes (the length is checked before parsing).
pub fn parse_index(json: &[u8]) -> Result<Vec<String>, AppStateError> {
    if json.len() > MAX_INDEX_LEN {
        return Err(AppStateError::TooLarge("index"));
    }
    let parts: Vec<String> = serde_json::from_slice(json).map_err(|_| AppStateError::BadIndex)?;
    if parts.len() > MAX_INDEX_PARTS {
        return Err(AppStateError::TooLarge("index parts"));
    }
    Ok(parts)
}

/// Constant-time equality of a computed MAC and a received one (of any length).
fn ct_eq(computed: &[u8; 32], received: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    received.len() == 32 && bool::from(computed.ct_eq(received))
}

/// The keys of `key_id`, or [`AppStateError::MissingKey`].
fn lookup(keys: &impl KeyLookup, key_id: &[u8]) -> Result<MutationKeys, AppStateError> {
    keys.keys(key_id)
        .ok_or_else(|| AppStateError::MissingKey(KeyId(key_id.to_vec())))
}

/// A small cache so a patch of 1000 records under one key expands it once.
struct Keyring<'a, K: KeyLookup> {
    lookup: &'a K,
    cached: Vec<(Vec<u8>, MutationKeys)>,
}

impl<'a, K: KeyLookup> Keyring<'a, K> {
    fn new(lookup: &'a K) -> Self {
        Keyring {
            lookup,
            cached: Vec::new(),
        }
    }

    fn get(&mut self, key_id: &[u8]) -> Result<&MutationKeys, AppStateError> {
        let pos = match self.cached.iter().position(|(id, _)| id == key_id) {
            Some(p) => p,
            None => {
                // A hostile patch could name many keys; only known ones are cached, each once.
                let k = lookup(self.lookup, key_id)?;
                self.cached.push((key_id.to_vec(), k));
                self.cached.len() - 1
            }
        };
        Ok(&self.cached[pos].1)
    }
}

fn record_key_id(record: &wa::SyncdRecord) -> Result<&[u8], AppStateError> {
    key_id_of(&record.key_id, "record without keyID")
}

/// A `KeyId`'s bytes; `missing` names what lacked one.
fn key_id_of<'a>(
    key_id: &'a Option<wa::KeyId>,
    missing: &'static str,
) -> Result<&'a [u8], AppStateError> {
    key_id
        .as_ref()
        .and_then(|k| k.id.as_deref())
        .ok_or(AppStateError::Malformed(missing))
}

/// A `SyncdVersion`'s number; `missing` names what lacked one.
fn version_of(
    version: &Option<wa::SyncdVersion>,
    missing: &'static str,
) -> Result<u64, AppStateError> {
    version
        .as_ref()
        .and_then(|v| v.version)
        .ok_or(AppStateError::Malformed(missing))
}

/// Decodes and verifies a snapshot (§3.5): every record is a SET; the LTHash of all value MACs,
/// with the snapshot's version and the collection name, must give `snapshot.mac` under the
/// snapshot's key.
pub fn decode_snapshot(
    c: Collection,
    snap: &wa::SyncdSnapshot,
    keys: &impl KeyLookup,
) -> Result<Applied, AppStateError> {
    let version = version_of(&snap.version, "snapshot without version")?;
    let key_id = key_id_of(&snap.key_id, "snapshot without keyID")?;
    if snap.records.len() > MAX_RECORDS {
        return Err(AppStateError::TooLarge("records"));
    }
    let mut ring = Keyring::new(keys);
    let main = ring.get(key_id)?.clone();
    let mut hash = LtHash::default();
    let mut mutations = Vec::with_capacity(snap.records.len());
    for record in &snap.records {
        let kid = record_key_id(record)?;
        let m = decode_record(Operation::Set, record, ring.get(kid)?, kid)?;
        hash.add(&m.value_mac);
        mutations.push(m);
    }
    let expected = main.snapshot_mac(&hash, version, c);
    if !ct_eq(&expected, snap.mac.as_deref().unwrap_or_default()) {
        return Err(AppStateError::BadSnapshotMac);
    }
    Ok(Applied {
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
    })
}

/// Decodes and verifies one patch on top of `state`. `patch.mutations` must already hold the
/// downloaded `externalMutations`, if any, and `patch.version` must be set (Baileys fills a
/// missing one with the collection's version + 1; the client does the same before calling).
///
/// LTHash rule for a SET and a REMOVE of the same index in one patch (Appendix A; CLIENT-FEATURES
/// §3.5): we follow whatsapp-rust, which follows WA Web `WAWebSyncdAntiTampering` "index mode"
/// (every mutation here has an index, so index mode always holds): a SET whose index is also
/// REMOVEd in the patch does not subtract, and every subtraction takes the *stored* value,
/// never an earlier mutation of the same patch. whatsmeow's in-patch look-back differs for
/// `[SET x, REMOVE x]`; the server's snapshot MAC is the judge, and it is computed the WA Web
/// way. An index repeated within one operation is refused ([`AppStateError::DuplicateIndex`]),
/// as WA Web does, so no other in-patch collision exists.
pub fn decode_patch(
    c: Collection,
    state: &CollectionState,
    patch: &wa::SyncdPatch,
    keys: &impl KeyLookup,
) -> Result<Applied, AppStateError> {
    let version = version_of(&patch.version, "patch without version")?;
    let key_id = key_id_of(&patch.key_id, "patch without keyID")?;
    if patch.mutations.is_empty() && patch.external_mutations.is_some() {
        return Err(AppStateError::Malformed(
            "external mutations not downloaded",
        ));
    }
    if patch.mutations.len() > MAX_RECORDS {
        return Err(AppStateError::TooLarge("mutations"));
    }
    let mut ring = Keyring::new(keys);
    let main = ring.get(key_id)?.clone();
    let snapshot_mac = patch
        .snapshot_mac
        .as_deref()
        .ok_or(AppStateError::Malformed("patch without snapshotMAC"))?;

    // The patch MAC first: it authenticates the snapshot MAC and the list of value MACs before
    // any record is decrypted.
    let mut value_macs: Vec<&[u8]> = Vec::with_capacity(patch.mutations.len());
    for m in &patch.mutations {
        let blob = m
            .record
            .as_ref()
            .and_then(|r| r.value.as_ref())
            .and_then(|v| v.blob.as_deref())
            .ok_or(AppStateError::Malformed("mutation without value"))?;
        if blob.len() < MAC_LEN {
            return Err(AppStateError::Truncated);
        }
        value_macs.push(&blob[blob.len() - MAC_LEN..]);
    }
    let expected = main.patch_mac(snapshot_mac, value_macs, version, c);
    if !ct_eq(&expected, patch.patch_mac.as_deref().unwrap_or_default()) {
        return Err(AppStateError::BadPatchMac);
    }

    let mut mutations = Vec::with_capacity(patch.mutations.len());
    for m in &patch.mutations {
        let op = Operation::from_proto(m.operation)
            .ok_or(AppStateError::Malformed("unknown operation"))?;
        let record = m
            .record
            .as_ref()
            .ok_or(AppStateError::Malformed("mutation without record"))?;
        let kid = record_key_id(record)?;
        mutations.push(decode_record(op, record, ring.get(kid)?, kid)?);
    }
    let (hash, added, removed) = fold(state, &mutations)?;
    let expected = main.snapshot_mac(&hash, version, c);
    if !ct_eq(&expected, snapshot_mac) {
        return Err(AppStateError::BadSnapshotMac);
    }
    Ok(Applied {
        collection: c,
        version,
        hash,
        replaces: false,
        added,
        removed,
        mutations,
    })
}

/// What a run of mutations does: the new LTHash, the (index MAC, value MAC) pairs added and the
/// index MACs removed.
pub(crate) type Folded = (LtHash, Vec<([u8; 32], [u8; 32])>, Vec<[u8; 32]>);

/// The LTHash and table changes of `mutations` on top of `state`, by the index-mode rule (see
/// [`decode_patch`]). Shared by the decoder and the encoder so both count alike.
pub(crate) fn fold(
    state: &CollectionState,
    mutations: &[Mutation],
) -> Result<Folded, AppStateError> {
    let mut sets: Vec<[u8; 32]> = Vec::new();
    let mut removes: Vec<[u8; 32]> = Vec::new();
    for m in mutations {
        let seen = match m.operation {
            Operation::Set => &mut sets,
            Operation::Remove => &mut removes,
        };
        seen.push(m.index_mac);
    }
    for list in [&mut sets, &mut removes] {
        list.sort_unstable();
        if list.windows(2).any(|w| w[0] == w[1]) {
            return Err(AppStateError::DuplicateIndex);
        }
    }
    let removed_here = |i: &[u8; 32]| removes.binary_search(i).is_ok();
    let mut sub: Vec<[u8; 32]> = Vec::new();
    let mut add: Vec<[u8; 32]> = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for m in mutations {
        match m.operation {
            Operation::Set => {
                add.push(m.value_mac);
                added.push((m.index_mac, m.value_mac));
                if removed_here(&m.index_mac) {
                    continue; // the REMOVE owns the subtraction
                }
            }
            Operation::Remove => removed.push(m.index_mac),
        }
        // A REMOVE with nothing stored is only a warning (unsubscribing from contacts makes
        // one, whatsmeow `updateHash`); the snapshot MAC still judges the result.
        if let Some(prev) = state.macs.get(&m.index_mac) {
            sub.push(*prev);
        }
    }
    let mut hash = state.hash;
    hash.subtract_then_add(sub.iter().map(|m| &m[..]), add.iter().map(|m| &m[..]));
    Ok((hash, added, removed))
}

/// Decodes the primary's plaintext copy of a collection (§3.7, whatsmeow `ProcessRecovery`):
/// re-indexes each record with HMAC(indexKey, index) and checks that its LTHash is the sum of
/// the records' value MACs (whatsmeow trusts it unchecked; checking costs nothing and catches
/// a copy that is not what it claims). The client ignores a copy not newer than its state.
pub fn decode_recovery(
    c: Collection,
    rec: &wa::SyncdSnapshotRecovery,
    keys: &impl KeyLookup,
) -> Result<Applied, AppStateError> {
    if rec.collection_name.as_deref() != Some(c.name()) {
        return Err(AppStateError::WrongCollection);
    }
    let version = version_of(&rec.version, "recovery without version")?;
    let claimed: [u8; LTHASH_LEN] = rec
        .collection_lthash
        .as_deref()
        .and_then(|h| h.try_into().ok())
        .ok_or(AppStateError::Malformed("recovery LTHash not 128 bytes"))?;
    if rec.mutation_records.len() > MAX_RECORDS {
        return Err(AppStateError::TooLarge("records"));
    }
    let mut ring = Keyring::new(keys);
    let mut hash = LtHash::default();
    let mut mutations = Vec::with_capacity(rec.mutation_records.len());
    for r in &rec.mutation_records {
        let kid = r
            .key_id
            .as_deref()
            .ok_or(AppStateError::Malformed("record without keyID"))?;
        let keys = ring.get(kid)?;
        let data = r
            .value
            .clone()
            .ok_or(AppStateError::Malformed("record without value"))?;
        let index_json = data
            .index
            .as_deref()
            .ok_or(AppStateError::Malformed("SyncActionData without index"))?;
        let index = parse_index(index_json)?;
        let index_mac = keys.index_mac(index_json);
        let value_mac: [u8; 32] = r
            .mac
            .as_deref()
            .and_then(|m| m.try_into().ok())
            .ok_or(AppStateError::Malformed("record MAC not 32 bytes"))?;
        hash.add(&value_mac);
        let raw = data.encode_to_vec();
        if raw.len() > MAX_VALUE_LEN {
            return Err(AppStateError::TooLarge("value"));
        }
        mutations.push(Mutation {
            operation: Operation::Set,
            index,
            index_mac,
            value_mac,
            key_id: kid.to_vec(),
            data,
            raw,
        });
    }
    if hash.0 != claimed {
        return Err(AppStateError::BadLtHash);
    }
    Ok(Applied {
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
    })
}

/// The key ids a snapshot and patches reference (the snapshot's and each patch's own key, and
/// every record's) that `keys` does not know, each once, in order of first reference
/// (whatsmeow `GetMissingKeyIDs`). The client asks the primary for these.
pub fn missing_keys<'a>(
    snapshot: Option<&'a wa::SyncdSnapshot>,
    patches: impl IntoIterator<Item = &'a wa::SyncdPatch>,
    keys: &impl KeyLookup,
) -> Vec<Vec<u8>> {
    let mut ids: Vec<&[u8]> = Vec::new();
    let record_id = |r: &'a wa::SyncdRecord| r.key_id.as_ref().and_then(|k| k.id.as_deref());
    if let Some(s) = snapshot {
        ids.extend(s.key_id.as_ref().and_then(|k| k.id.as_deref()));
        ids.extend(s.records.iter().filter_map(record_id));
    }
    for p in patches {
        ids.extend(p.key_id.as_ref().and_then(|k| k.id.as_deref()));
        ids.extend(
            p.mutations
                .iter()
                .filter_map(|m| m.record.as_ref())
                .filter_map(record_id),
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for id in ids {
        if seen.insert(id) && keys.keys(id).is_none() {
            out.push(id.to_vec());
        }
    }
    out
}
