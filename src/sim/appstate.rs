//! One account's app state (syncd, CLIENT-FEATURES §3) on both sides the simulator plays.
//! The server's side holds, per collection, the version, the encrypted records (what a
//! snapshot is made of), the recent patches with the version it assigned, and the latest
//! snapshot as an `md-app-state` blob on the CDN; it never holds keys, so patches are opaque
//! to it beyond their shape, as on WhatsApp. The phone's side (the primary) owns the sync keys
//! and the plaintext: it decodes every accepted patch with the core (`crate::appstate`),
//! encodes its own, and answers recovery. The `w:sync:app:state` iq is answered here; who is
//! told afterwards is `phone_appstate.rs`.

use std::collections::{BTreeMap, HashSet, VecDeque};

use prost::Message as _;
use zeroize::Zeroizing;

use super::cdn::Cdn;
use crate::appstate::{
    Collection, CollectionState, MutationKeys, Operation, PendingMutation, decode_patch,
    encode_patch, encode_snapshot,
};
use crate::binary::{Jid, Node};
use crate::proto::wa;
use crate::stanza::appstate::{CollectionAnswer, SyncItem, parse_sync_request, sync_response};
use bytes::Bytes;

/// The five collections, in the core's order (whatsmeow appstate/keys.go `WAPatchName*`).
pub const COLLECTIONS: [&str; 5] = [
    "critical_block",
    "critical_unblock_low",
    "regular_high",
    "regular_low",
    "regular",
];

/// Patches kept per collection; older ones are dropped (a snapshot covers them), and a device
/// asking from before the oldest kept one is told 404 and must fetch a snapshot.
pub const MAX_PATCHES_KEPT: usize = 256;

/// Largest patch accepted inline, in bytes. WhatsApp's limit is not published; clients send
/// far smaller patches (one action, a few hundred bytes), and larger ones go external.
pub const MAX_PATCH_BYTES: usize = 64 * 1024;

/// Records a collection may hold; an upload that would pass it is refused (400).
pub const MAX_RECORDS: usize = 20_000;

/// Patches served per `<collection>` answer before `has_more_patches="true"` (WhatsApp's page
/// size is not published; tests set a smaller one with [`AppState::set_page`]).
pub const DEFAULT_PAGE: usize = 50;

/// Collections one iq may name: each at most once.
pub const MAX_COLLECTIONS_PER_IQ: usize = COLLECTIONS.len();

/// The index of a collection name.
pub fn collection_index(name: &str) -> Option<usize> {
    COLLECTIONS.iter().position(|c| *c == name)
}

fn coll(ci: usize) -> Collection {
    Collection::from_name(COLLECTIONS[ci]).unwrap_or(Collection::Regular)
}

/// An app-state sync key the phone made and shares with its companions. `Debug` shows its id.
#[derive(Clone)]
pub struct SyncKey {
    /// Its id (`AppStateSyncKeyId.keyID`).
    pub id: Vec<u8>,
    /// The 32-byte key data.
    pub data: Zeroizing<[u8; 32]>,
    /// When it was made (ms).
    pub timestamp: i64,
    /// Fingerprint raw id.
    pub raw_id: u32,
}

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SyncKey {{ id: {} }}",
            crate::util::hex::encode(&self.id)
        )
    }
}

impl SyncKey {
    fn generate(now_ms: i64) -> SyncKey {
        let raw_id: u32 = rand::random();
        // Real key ids are six bytes, two zero bytes and four more (seen as `AAAA…` base64).
        let mut id = vec![0, 0];
        id.extend_from_slice(&raw_id.to_be_bytes());
        SyncKey {
            id,
            data: Zeroizing::new(rand::random()),
            timestamp: now_ms,
            raw_id,
        }
    }

    /// The key as a key share carries it.
    pub fn to_proto(&self) -> wa::AppStateSyncKey {
        wa::AppStateSyncKey {
            key_id: Some(wa::AppStateSyncKeyId {
                key_id: Some(self.id.clone()),
            }),
            key_data: Some(wa::AppStateSyncKeyData {
                key_data: Some(self.data.to_vec()),
                fingerprint: Some(wa::AppStateSyncKeyFingerprint {
                    raw_id: Some(self.raw_id),
                    current_index: Some(0),
                    device_indexes: vec![0],
                }),
                timestamp: Some(self.timestamp),
            }),
        }
    }
}

/// What the phone knows of one record.
#[derive(Clone)]
pub struct PlainRecord {
    /// The index, decoded (empty when the phone could not open the record).
    pub index: Vec<String>,
    /// The decrypted value (None when the phone could not open it: unknown key, bad MAC).
    pub data: Option<wa::SyncActionData>,
    /// Its value MAC.
    pub value_mac: [u8; 32],
    /// The key it was sealed with.
    pub key_id: Vec<u8>,
}

/// Debug shows the index only: a value may carry the NCT salt.
impl std::fmt::Debug for PlainRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainRecord")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A defect the server introduces into its copy of a collection (for recovery tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The latest stored patch's snapshotMAC has a flipped byte: incremental fetches fail,
    /// a snapshot is still good.
    Patch,
    /// The snapshot's MAC has a flipped byte too, until the next accepted patch: only the
    /// phone's recovery (peer data operation) helps.
    Snapshot,
    /// The latest stored patch is lost: fetches skip its version.
    DropPatch,
}

/// One collection, server and phone side.
#[derive(Default)]
struct Coll {
    /// Server: the version.
    version: u64,
    /// Server: the encrypted records by index MAC.
    records: BTreeMap<[u8; 32], wa::SyncdRecord>,
    /// Server: (version, encoded SyncdPatch with its version set), oldest first.
    patches: VecDeque<(u64, Vec<u8>)>,
    /// Server: the latest snapshotMAC and key id (a snapshot at `version` carries them: it is
    /// the same HMAC over the same LTHash, version and name, so the server needs no key).
    mac: Option<(Vec<u8>, Vec<u8>)>,
    /// Server: the snapshot blob made last, (version, ExternalBlobReference bytes).
    blob: Option<(u64, Vec<u8>)>,
    /// Phone: the verified state (version, LTHash, MAC table), as a client keeps it.
    state: CollectionState,
    /// Phone: what each record says.
    plain: BTreeMap<[u8; 32], PlainRecord>,
}

/// An account's app state: keys, collections and the page size.
pub struct AppState {
    keys: Vec<SyncKey>,
    colls: [Coll; 5],
    page: usize,
    seeded: bool,
    /// The NCT salt the phone last read in `nct_salt_sync`, for the cstoken check.
    nct_salt: Option<Vec<u8>>,
    /// A change the phone makes just before the next upload to its collection is read (a
    /// test's race: the upload then conflicts, 409).
    write_first: Option<(usize, Vec<PendingMutation>)>,
}

impl Default for AppState {
    fn default() -> AppState {
        AppState {
            keys: Vec::new(),
            colls: Default::default(),
            page: DEFAULT_PAGE,
            seeded: false,
            nct_salt: None,
            write_first: None,
        }
    }
}

/// The result of one `<collection>` of an upload, for who must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The collection.
    pub name: &'static str,
    /// Its new version.
    pub version: u64,
}

fn op_of(m: &wa::SyncdMutation) -> i32 {
    m.operation.unwrap_or(0)
}

fn index_mac_of(r: &wa::SyncdRecord) -> Option<[u8; 32]> {
    r.index.as_ref()?.blob.as_deref()?.try_into().ok()
}

fn value_mac_of(r: &wa::SyncdRecord) -> Option<[u8; 32]> {
    let b = r.value.as_ref()?.blob.as_deref()?;
    (b.len() >= 64).then(|| b[b.len() - 32..].try_into().ok())?
}

/// Whether a patch is shaped as WhatsApp takes one: MACs of 32 bytes, a key id, one or more
/// mutations each with a 32-byte index MAC, a value long enough for IV, a block and its MAC,
/// and a key id; no index twice in one operation (WA Web refuses that, see the core's
/// `decode_patch`); mutations inline (the simulator takes no external mutations).
fn well_formed(p: &wa::SyncdPatch) -> bool {
    let key = |k: &Option<wa::KeyId>| {
        k.as_ref()
            .and_then(|k| k.id.as_ref())
            .is_some_and(|i| !i.is_empty() && i.len() <= 64)
    };
    let mut seen = HashSet::new();
    p.snapshot_mac.as_ref().is_some_and(|m| m.len() == 32)
        && p.patch_mac.as_ref().is_some_and(|m| m.len() == 32)
        && key(&p.key_id)
        && p.external_mutations.is_none()
        && !p.mutations.is_empty()
        && p.mutations.iter().all(|m| {
            matches!(m.operation, None | Some(0) | Some(1))
                && m.record.as_ref().is_some_and(|r| {
                    value_mac_of(r).is_some()
                        && key(&r.key_id)
                        && index_mac_of(r).is_some_and(|i| seen.insert((op_of(m), i)))
                })
        })
}

fn coll_error(name: &str, code: u16, text: &str) -> CollectionAnswer {
    CollectionAnswer::failed(name, 0, code, text)
}

fn is_salt(index: &[String]) -> bool {
    index.len() == 1 && index[0] == "nct_salt_sync"
}

impl AppState {
    /// Sets the page size (at least 1).
    pub fn set_page(&mut self, page: usize) {
        self.page = page.max(1);
    }

    /// The sync keys, oldest first.
    pub fn keys(&self) -> &[SyncKey] {
        &self.keys
    }

    /// The salt of the last `nct_salt_sync` SET (None after a REMOVE or before any).
    pub fn nct_salt(&self) -> Option<&[u8]> {
        self.nct_salt.as_deref()
    }

    /// Whether the phone has seeded its collections.
    pub fn seeded(&self) -> bool {
        self.seeded
    }

    /// A collection's version on the server.
    pub fn version(&self, name: &str) -> Option<u64> {
        Some(self.colls[collection_index(name)?].version)
    }

    fn key(&self, id: &[u8]) -> Option<MutationKeys> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| MutationKeys::expand(&k.data[..]))
    }

    /// The phone's first key, made on first use.
    pub(crate) fn ensure_key(&mut self, now_ms: i64) -> &SyncKey {
        if self.keys.is_empty() {
            self.keys.push(SyncKey::generate(now_ms));
        }
        &self.keys[self.keys.len() - 1]
    }

    /// The phone's record for a decoded mutation, and the salt it carries.
    fn note(&mut self, ci: usize, m: &crate::appstate::Mutation) {
        if is_salt(&m.index) {
            self.nct_salt = match m.operation {
                Operation::Remove => None,
                Operation::Set => m
                    .data
                    .value
                    .as_ref()
                    .and_then(|v| v.nct_salt_sync_action.as_ref()?.salt.clone())
                    .filter(|s| !s.is_empty()),
            };
        }
        let plain = &mut self.colls[ci].plain;
        match m.operation {
            Operation::Remove => {
                plain.remove(&m.index_mac);
            }
            Operation::Set => {
                plain.insert(
                    m.index_mac,
                    PlainRecord {
                        index: m.index.clone(),
                        data: Some(m.data.clone()),
                        value_mac: m.value_mac,
                        key_id: m.key_id.clone(),
                    },
                );
            }
        }
    }

    /// The phone seeds its collections once (at its first companion's linking): each
    /// collection given records gets a snapshot of them at version 1.
    pub(crate) fn seed(&mut self, muts: Vec<(Collection, PendingMutation)>, now_ms: i64) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        let key = self.ensure_key(now_ms).clone();
        let keys = MutationKeys::expand(&key.data[..]);
        for (ci, name) in COLLECTIONS.iter().enumerate() {
            let records: Vec<PendingMutation> = muts
                .iter()
                .filter(|(c, _)| c.name() == *name)
                .map(|(_, m)| {
                    let mut m = m.clone();
                    m.value.timestamp = Some(now_ms);
                    m
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            let (snap, applied) =
                encode_snapshot(coll(ci), 1, &records, &key.id, &keys, &mut rand::random);
            let c = &mut self.colls[ci];
            c.version = 1;
            c.mac = Some((snap.mac.clone().unwrap_or_default(), key.id.clone()));
            for r in snap.records {
                if let Some(i) = index_mac_of(&r) {
                    c.records.insert(i, r);
                }
            }
            c.state.apply(&applied);
            for m in &applied.mutations {
                self.note(ci, m);
            }
        }
    }

    /// Arms a race: the phone makes `muts` in collection `ci` just before the server reads the
    /// next upload to it, which then conflicts (409 with the phone's patch).
    pub(crate) fn write_first(&mut self, ci: usize, muts: Vec<PendingMutation>) {
        self.write_first = Some((ci, muts));
    }

    /// The phone encodes `muts` with the core and the server accepts the patch like any
    /// upload: returns the new version.
    pub(crate) fn phone_patch(
        &mut self,
        ci: usize,
        muts: &[PendingMutation],
        now_ms: i64,
    ) -> Option<u64> {
        let key = self.ensure_key(now_ms).clone();
        let keys = MutationKeys::expand(&key.data[..]);
        let (patch, _) = encode_patch(
            coll(ci),
            &self.colls[ci].state,
            &key.id,
            &keys,
            muts,
            now_ms,
            &mut rand::random,
        );
        self.accept(ci, patch).ok()
    }

    /// The server stores `patch` at the next version; the phone decodes and applies it.
    fn accept(&mut self, ci: usize, mut patch: wa::SyncdPatch) -> Result<u64, (u16, &'static str)> {
        let c = &self.colls[ci];
        let adds = patch
            .mutations
            .iter()
            .filter(|m| op_of(m) == 0)
            .filter_map(|m| index_mac_of(m.record.as_ref()?))
            .filter(|i| !c.records.contains_key(i))
            .count();
        if c.records.len() + adds > MAX_RECORDS {
            return Err((400, "bad-request"));
        }
        let version = c.version + 1;
        patch.version = Some(wa::SyncdVersion {
            version: Some(version),
        });
        self.phone_reads(ci, &patch, version);
        let key_id = patch
            .key_id
            .as_ref()
            .and_then(|k| k.id.clone())
            .unwrap_or_default();
        let c = &mut self.colls[ci];
        for m in &patch.mutations {
            let Some(r) = m.record.as_ref() else { continue };
            let Some(imac) = index_mac_of(r) else {
                continue;
            };
            if op_of(m) == 1 {
                c.records.remove(&imac);
            } else {
                c.records.insert(imac, r.clone());
            }
        }
        c.version = version;
        c.mac = Some((patch.snapshot_mac.clone().unwrap_or_default(), key_id));
        c.patches.push_back((version, patch.encode_to_vec()));
        while c.patches.len() > MAX_PATCHES_KEPT {
            c.patches.pop_front();
        }
        Ok(version)
    }

    /// The phone decodes an accepted patch and applies it. One it cannot verify (a key it
    /// lacks, a bad MAC) still moves its MAC table and LTHash on, unread, so its own next
    /// patch builds on what the server holds.
    fn phone_reads(&mut self, ci: usize, patch: &wa::SyncdPatch, version: u64) {
        let lookup = |id: &[u8]| self.key(id);
        match decode_patch(coll(ci), &self.colls[ci].state, patch, &lookup) {
            Ok(applied) => {
                self.colls[ci].state.apply(&applied);
                for m in &applied.mutations {
                    self.note(ci, m);
                }
            }
            Err(e) => {
                tracing::debug!(collection = COLLECTIONS[ci], version, error = %e, "simulated phone cannot verify a patch");
                let c = &mut self.colls[ci];
                for m in &patch.mutations {
                    let Some(r) = m.record.as_ref() else { continue };
                    let (Some(imac), Some(vmac)) = (index_mac_of(r), value_mac_of(r)) else {
                        continue;
                    };
                    if let Some(prev) = c.state.macs.remove(&imac) {
                        c.state.hash.subtract(&prev);
                    }
                    c.plain.remove(&imac);
                    if op_of(m) == 0 {
                        c.state.hash.add(&vmac);
                        c.state.macs.insert(imac, vmac);
                        c.plain.insert(
                            imac,
                            PlainRecord {
                                index: Vec::new(),
                                data: None,
                                value_mac: vmac,
                                key_id: r
                                    .key_id
                                    .as_ref()
                                    .and_then(|k| k.id.clone())
                                    .unwrap_or_default(),
                            },
                        );
                    }
                }
                c.state.version = version;
            }
        }
    }

    /// The patches of collection `ci` after `from`, at most a page: (`SyncdPatch` bytes, the
    /// version the last reaches, more left).
    fn page_after(&self, ci: usize, from: u64) -> (Vec<Bytes>, u64, bool) {
        let c = &self.colls[ci];
        let mut after = c.patches.iter().filter(|(v, _)| *v > from);
        let mut reached = from;
        let out: Vec<Bytes> = after
            .by_ref()
            .take(self.page)
            .map(|(v, b)| {
                reached = *v;
                Bytes::from(b.clone())
            })
            .collect();
        (out, reached, after.next().is_some())
    }

    /// Whether the kept patches reach back to `from` (every version after it is kept, or
    /// was dropped by a fault, which the server does not know).
    fn covers(&self, ci: usize, from: u64) -> bool {
        let c = &self.colls[ci];
        from >= c.version || c.patches.front().is_some_and(|(v, _)| *v <= from + 1)
    }

    /// The snapshot to serve: the blob made last if the kept patches lead on from it, else a
    /// fresh one at the current version, stored on the CDN. None for an empty collection.
    fn snapshot(&mut self, ci: usize, cdn: &Cdn) -> Option<(u64, Vec<u8>)> {
        if self.colls[ci].version == 0 {
            return None;
        }
        if let Some((v, b)) = &self.colls[ci].blob
            && self.covers(ci, *v)
        {
            return Some((*v, b.clone()));
        }
        let c = &mut self.colls[ci];
        let (mac, key_id) = c.mac.clone().unwrap_or_default();
        let snap = wa::SyncdSnapshot {
            version: Some(wa::SyncdVersion {
                version: Some(c.version),
            }),
            records: c.records.values().cloned().collect(),
            mac: Some(mac),
            key_id: Some(wa::KeyId { id: Some(key_id) }),
        };
        let blob = store_blob(cdn, &snap.encode_to_vec())?;
        c.blob = Some((c.version, blob.clone()));
        Some((c.version, blob))
    }

    /// Applies a corruption to collection `name`; false if there is nothing to corrupt.
    pub fn corrupt(&mut self, name: &str, how: Corruption) -> bool {
        let Some(ci) = collection_index(name) else {
            return false;
        };
        let c = &mut self.colls[ci];
        let mut damaged = false;
        if how == Corruption::DropPatch {
            return c.patches.pop_back().is_some();
        }
        if let Some((_, bytes)) = c.patches.back_mut()
            && let Ok(mut p) = wa::SyncdPatch::decode(&bytes[..])
            && let Some(m) = p.snapshot_mac.as_mut().filter(|m| !m.is_empty())
        {
            m[0] ^= 0x80;
            *bytes = p.encode_to_vec();
            damaged = true;
        }
        if how == Corruption::Snapshot
            && let Some((m, _)) = c.mac.as_mut().filter(|(m, _)| !m.is_empty())
        {
            m[0] ^= 0x80;
            c.blob = None;
            damaged = true;
        }
        damaged
    }

    /// The phone's plaintext copy of a collection (CLIENT-FEATURES §3.7): every record it could
    /// open, its LTHash and version.
    pub fn recovery(&self, name: &str) -> Option<wa::SyncdSnapshotRecovery> {
        let c = &self.colls[collection_index(name)?];
        Some(wa::SyncdSnapshotRecovery {
            version: Some(wa::SyncdVersion {
                version: Some(c.state.version),
            }),
            collection_name: Some(name.to_owned()),
            mutation_records: c
                .plain
                .values()
                .filter_map(|r| {
                    Some(wa::SyncdPlainTextRecord {
                        value: Some(r.data.clone()?),
                        key_id: Some(r.key_id.clone()),
                        mac: Some(r.value_mac.to_vec()),
                    })
                })
                .collect(),
            collection_lthash: Some(c.state.hash.0.to_vec()),
        })
    }

    /// Answers a `<iq xmlns="w:sync:app:state" type="set">`: fetches (snapshot when asked,
    /// else patches after the version, paged) and uploads (409 with the missing patches when
    /// the sender's version is stale). Returns the answer and the collections that changed.
    pub(crate) fn answer(&mut self, node: &Node, id: &str, cdn: &Cdn) -> (Node, Vec<Accepted>) {
        let Some(asked) = parse_sync_request(node, MAX_COLLECTIONS_PER_IQ) else {
            return (super::iq::error(id, 400, "bad-request"), Vec::new());
        };
        let mut changed = Vec::new();
        let answers: Vec<CollectionAnswer> = asked
            .iter()
            .map(|item| self.collection(item, cdn, &mut changed))
            .collect();
        (sync_response(id, &answers), changed)
    }

    fn collection(
        &mut self,
        item: &SyncItem,
        cdn: &Cdn,
        changed: &mut Vec<Accepted>,
    ) -> CollectionAnswer {
        let name = item.name.as_str();
        // An unknown collection is fatal for the asker (whatsapp-rust `parse_collection_error`:
        // 400 and 404 are not retried).
        let Some(ci) = collection_index(name) else {
            return coll_error(name, 404, "item-not-found");
        };
        // whatsmeow omits the version when it asks for a snapshot; Baileys sends 0.
        let from = item.version.unwrap_or(0);
        // A device cannot be ahead of the server.
        if from > self.colls[ci].version {
            return coll_error(name, 400, "bad-request");
        }
        if !item.patches.is_empty() {
            return self.upload(ci, from, &item.patches, changed);
        }
        let mut snapshot = None;
        let mut start = from;
        if item.snapshot {
            if let Some((v, blob)) = self.snapshot(ci, cdn) {
                snapshot = Some(Bytes::from(blob));
                start = v;
            } else if self.colls[ci].version > 0 {
                // The CDN refused the blob: the device may try again.
                return coll_error(name, 503, "service-unavailable");
            }
        } else if !self.covers(ci, from) {
            // Older than the patches kept: only a snapshot can bring the device up to date.
            return coll_error(name, 404, "item-not-found");
        }
        let (patches, reached, has_more) = self.page_after(ci, start);
        // The version the device reaches with this answer.
        CollectionAnswer {
            name: name.to_owned(),
            version: reached,
            has_more,
            patches,
            snapshot,
            error: None,
        }
    }

    fn upload(
        &mut self,
        ci: usize,
        from: u64,
        patches: &[Bytes],
        changed: &mut Vec<Accepted>,
    ) -> CollectionAnswer {
        let name = COLLECTIONS[ci];
        // whatsmeow and Baileys send one patch per collection per iq.
        let [bytes] = patches else {
            return coll_error(name, 400, "bad-request");
        };
        if bytes.is_empty() || bytes.len() > MAX_PATCH_BYTES {
            return coll_error(name, 400, "bad-request");
        }
        let Ok(patch) = wa::SyncdPatch::decode(&bytes[..]) else {
            return coll_error(name, 400, "bad-request");
        };
        if !well_formed(&patch) {
            return coll_error(name, 400, "bad-request");
        }
        if let Some((wci, muts)) = self.write_first.take_if(|(wci, _)| *wci == ci) {
            // The phone wins the race: its change lands first, and this upload is stale.
            let now_ms = crate::util::clock::now_ms_i64();
            if let Some(v) = self.phone_patch(wci, &muts, now_ms) {
                changed.push(Accepted {
                    name: COLLECTIONS[wci],
                    version: v,
                });
            }
        }
        let current = self.colls[ci].version;
        if from != current {
            // Stale: the device gets what it lacks and tries again (whatsmeow `sendAppState`
            // applies the patches of the 409 and retries once).
            if !self.covers(ci, from) {
                return coll_error(name, 404, "item-not-found");
            }
            let (patches, _, has_more) = self.page_after(ci, from);
            return CollectionAnswer {
                patches,
                has_more,
                ..CollectionAnswer::failed(name, current, 409, "conflict")
            };
        }
        match self.accept(ci, patch) {
            Ok(v) => {
                changed.push(Accepted { name, version: v });
                CollectionAnswer {
                    name: name.to_owned(),
                    version: v,
                    ..Default::default()
                }
            }
            Err((code, text)) => coll_error(name, code, text),
        }
    }
}

/// Encrypts `plain` as an `md-app-state` blob (media keys "WhatsApp App State Keys"), stores it
/// on the CDN and returns its `ExternalBlobReference` bytes.
fn store_blob(cdn: &Cdn, plain: &[u8]) -> Option<Vec<u8>> {
    use crate::media::{MediaType, expand};
    let media_key = Zeroizing::new(rand::random::<[u8; 32]>());
    let keys = expand(&media_key, MediaType::AppState);
    let (body, sums) = crate::media::cipher::encrypt(&keys, plain);
    let up = match cdn.store(MediaType::AppState.mms_type(), &body) {
        Ok(up) => up,
        Err(e) => {
            tracing::warn!(error = %e, "simulator: cannot store an app-state snapshot");
            return None;
        }
    };
    Some(
        wa::ExternalBlobReference {
            media_key: Some(media_key.to_vec()),
            direct_path: Some(up.direct_path),
            handle: None,
            file_size_bytes: Some(sums.file_length),
            file_sha256: Some(sums.file_sha256.to_vec()),
            file_enc_sha256: Some(sums.file_enc_sha256.to_vec()),
        }
        .encode_to_vec(),
    )
}

/// Something the phone's user does that lands in app state (the control API's actions).
/// `Debug` shows a salt's length only.
#[derive(Clone, PartialEq, Eq)]
pub enum PhoneAction {
    /// Archive (true) or unarchive a chat; archiving also unpins it (whatsmeow `BuildArchive`).
    Archive {
        /// The chat.
        chat: Jid,
        /// Archived or not.
        archived: bool,
    },
    /// Mute a chat until `until_ms` (-1: forever), or unmute it (None).
    Mute {
        /// The chat.
        chat: Jid,
        /// Unix ms, -1 forever, None unmuted.
        until_ms: Option<i64>,
    },
    /// Pin (true) or unpin a chat.
    Pin {
        /// The chat.
        chat: Jid,
        /// Pinned or not.
        pinned: bool,
    },
    /// Mark a chat read (true) or unread.
    MarkRead {
        /// The chat.
        chat: Jid,
        /// Read or not.
        read: bool,
    },
    /// Add or rename a contact (indexed by its PN JID).
    Contact {
        /// The contact's PN JID.
        jid: Jid,
        /// Full name.
        full_name: String,
        /// First name, if any.
        first_name: Option<String>,
        /// Its LID JID, if known.
        lid: Option<Jid>,
    },
    /// Delete a contact from the address book (a `contact` REMOVE, indexed by its PN JID).
    RemoveContact {
        /// The contact's PN JID.
        jid: Jid,
    },
    /// Set (Some) or remove (None) the account's NCT salt.
    NctSalt(Option<Vec<u8>>),
}

impl std::fmt::Debug for PhoneAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhoneAction::Archive { chat, archived } => write!(f, "Archive({chat}, {archived})"),
            PhoneAction::Mute { chat, until_ms } => write!(f, "Mute({chat}, {until_ms:?})"),
            PhoneAction::Pin { chat, pinned } => write!(f, "Pin({chat}, {pinned})"),
            PhoneAction::MarkRead { chat, read } => write!(f, "MarkRead({chat}, {read})"),
            PhoneAction::Contact { jid, .. } => write!(f, "Contact({jid}, ..)"),
            PhoneAction::RemoveContact { jid } => write!(f, "RemoveContact({jid})"),
            PhoneAction::NctSalt(s) => write!(f, "NctSalt({:?} bytes)", s.as_ref().map(Vec::len)),
        }
    }
}

impl PhoneAction {
    /// The collection and mutations it makes, with the core's builders (index layouts and
    /// action versions: CLIENT-FEATURES §3.6 table). The message range of archive and read
    /// is empty: the simulated phone keeps no chat list.
    pub fn mutations(&self) -> (Collection, Vec<PendingMutation>) {
        use crate::appstate::encode;
        let range = || wa::SyncActionMessageRange::default();
        match self {
            PhoneAction::Archive { chat, archived } => encode::archive(chat, *archived, range()),
            PhoneAction::Mute { chat, until_ms } => encode::mute(chat, *until_ms),
            PhoneAction::Pin { chat, pinned } => encode::pin(chat, *pinned),
            PhoneAction::MarkRead { chat, read } => encode::mark_read(chat, *read, range()),
            PhoneAction::Contact {
                jid,
                full_name,
                first_name,
                lid,
            } => encode::contact(
                jid,
                Some(wa::ContactAction {
                    full_name: Some(full_name.clone()),
                    first_name: first_name.clone(),
                    lid_jid: lid.as_ref().map(Jid::to_string),
                    save_on_primary_addressbook: Some(true),
                    pn_jid: Some(jid.to_string()),
                    ..Default::default()
                }),
            ),
            PhoneAction::RemoveContact { jid } => encode::contact(jid, None),
            PhoneAction::NctSalt(salt) => encode::nct_salt(salt.as_deref()),
        }
    }
}

/// The push-name setting (`["setting_pushName"]`, critical_block, version 1; the core has no
/// builder for it, as the gateway never sets it).
pub fn push_name(name: &str) -> (Collection, PendingMutation) {
    (
        Collection::CriticalBlock,
        PendingMutation {
            operation: Operation::Set,
            index: vec!["setting_pushName".to_owned()],
            value: wa::SyncActionValue {
                push_name_setting: Some(wa::PushNameSetting {
                    name: Some(name.to_owned()),
                }),
                ..Default::default()
            },
            version: 1,
        },
    )
}

/// A collection as the phone reads it (the control API's `GET`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CollectionView {
    /// The collection.
    pub collection: String,
    /// Its version.
    pub version: u64,
    /// Its records, index MAC order.
    pub records: Vec<RecordView>,
}

/// One record of a [`CollectionView`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordView {
    /// The index (empty when the phone could not open the record).
    pub index: Vec<String>,
    /// What it says, for the actions the simulator knows (null otherwise, or when unopened).
    pub value: serde_json::Value,
    /// Its action version.
    pub version: Option<i32>,
    /// Its timestamp (ms).
    pub timestamp: Option<i64>,
}

/// What a value says, for the actions the simulator knows. The NCT salt shows its length
/// only: it is a secret (the Rust API's `nct_salt` gives the bytes).
fn value_json(v: &wa::SyncActionValue) -> serde_json::Value {
    use serde_json::json;
    if let Some(c) = &v.contact_action {
        return json!({ "contact": { "fullName": c.full_name, "firstName": c.first_name, "lid": c.lid_jid, "pn": c.pn_jid } });
    }
    if let Some(p) = &v.push_name_setting {
        return json!({ "pushName": p.name });
    }
    if let Some(m) = &v.mute_action {
        return json!({ "mute": { "muted": m.muted, "until": m.mute_end_timestamp } });
    }
    if let Some(a) = &v.archive_chat_action {
        return json!({ "archived": a.archived });
    }
    if let Some(p) = &v.pin_action {
        return json!({ "pinned": p.pinned });
    }
    if let Some(r) = &v.mark_chat_as_read_action {
        return json!({ "read": r.read });
    }
    if let Some(s) = &v.nct_salt_sync_action {
        return json!({ "nctSalt": { "length": s.salt.as_ref().map_or(0, Vec::len) } });
    }
    serde_json::Value::Null
}

impl AppState {
    /// The phone's reading of collection `name`.
    pub fn view(&self, name: &str) -> Option<CollectionView> {
        let c = &self.colls[collection_index(name)?];
        Some(CollectionView {
            collection: name.to_owned(),
            version: c.version,
            records: c
                .plain
                .values()
                .map(|r| RecordView {
                    index: r.index.clone(),
                    value: r
                        .data
                        .as_ref()
                        .and_then(|d| d.value.as_ref())
                        .map_or(serde_json::Value::Null, value_json),
                    version: r.data.as_ref().and_then(|d| d.version),
                    timestamp: r.data.as_ref().and_then(|d| d.value.as_ref()?.timestamp),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::Arc;

    use super::*;
    use crate::appstate::decode_snapshot;
    use crate::util::clock::SystemClock;

    const NOW: i64 = 1_700_000_000_000;

    fn cdn() -> Cdn {
        Cdn::new("127.0.0.1:1".into(), Arc::new(SystemClock)).unwrap()
    }

    fn user(n: &str) -> Jid {
        Jid::new(n, crate::binary::Server::User)
    }

    fn muts(a: PhoneAction) -> Vec<PendingMutation> {
        a.mutations().1
    }

    fn archive(n: &str, archived: bool) -> Vec<PendingMutation> {
        muts(PhoneAction::Archive {
            chat: user(n),
            archived,
        })
    }

    fn ci(name: &str) -> usize {
        collection_index(name).unwrap()
    }

    /// An account seeded with a contact, a push name and a salt.
    fn seeded() -> AppState {
        let mut a = AppState::default();
        let mut seed: Vec<(Collection, PendingMutation)> = Vec::new();
        let (c, ms) = PhoneAction::Contact {
            jid: user("19995550101"),
            full_name: "Bob Example".into(),
            first_name: Some("Bob".into()),
            lid: Some(Jid::new("123456789012345", crate::binary::Server::Lid)),
        }
        .mutations();
        seed.extend(ms.into_iter().map(|m| (c, m)));
        seed.push(push_name("Alice"));
        let (c, ms) = PhoneAction::NctSalt(Some(vec![9; 32])).mutations();
        seed.extend(ms.into_iter().map(|m| (c, m)));
        a.seed(seed, NOW);
        a
    }

    fn lookup(a: &AppState) -> impl Fn(&[u8]) -> Option<MutationKeys> + '_ {
        |id: &[u8]| a.key(id)
    }

    fn iq(collections: Vec<Node>) -> Node {
        Node::new("iq")
            .attr("xmlns", "w:sync:app:state")
            .attr("type", "set")
            .children(vec![Node::new("sync").children(collections)])
    }

    fn fetch(name: &str, version: Option<u64>, snapshot: bool) -> Node {
        let mut n = Node::new("collection").attr("name", name.to_owned());
        if let Some(v) = version {
            n = n.attr("version", v.to_string());
        }
        n.attr("return_snapshot", if snapshot { "true" } else { "false" })
    }

    fn upload(name: &str, version: u64, patch: &[u8]) -> Node {
        fetch(name, Some(version), false).children(vec![Node::new("patch").bytes(patch.to_vec())])
    }

    /// The one `<collection>` of an answer.
    fn only(answer: &Node) -> Node {
        let sync = answer.child("sync").unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(sync.child_nodes().len(), 1, "{answer}");
        sync.child_nodes()[0].clone()
    }

    fn patches(c: &Node) -> Vec<wa::SyncdPatch> {
        c.child("patches")
            .map(|p| {
                p.child_nodes()
                    .iter()
                    .map(|n| wa::SyncdPatch::decode(&n.content_bytes().unwrap()[..]).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn versions(c: &Node) -> Vec<u64> {
        patches(c)
            .iter()
            .map(|p| p.version.unwrap().version.unwrap())
            .collect()
    }

    fn attr(c: &Node, k: &str) -> Option<String> {
        c.get_str(k).map(|s| s.into_owned())
    }

    fn code(c: &Node) -> Option<String> {
        c.child("error")
            .and_then(|e| e.get_str("code"))
            .map(|s| s.into_owned())
    }

    /// Downloads and decrypts a `<snapshot>` as a client does.
    fn download(cdn: &Cdn, c: &Node) -> wa::SyncdSnapshot {
        let r = wa::ExternalBlobReference::decode(
            &c.child("snapshot").unwrap().content_bytes().unwrap()[..],
        )
        .unwrap();
        let (mut f, _) = cdn.open(r.direct_path.as_deref().unwrap()).unwrap();
        let mut body = Vec::new();
        f.read_to_end(&mut body).unwrap();
        let key: [u8; 32] = r.media_key.as_deref().unwrap().try_into().unwrap();
        let keys = crate::media::expand(&key, crate::media::MediaType::AppState);
        let plain = crate::media::cipher::decrypt(
            &keys,
            &body,
            crate::media::cipher::Expect {
                file_sha256: r.file_sha256.as_deref().unwrap().try_into().unwrap(),
                file_enc_sha256: r.file_enc_sha256.as_deref().map(|h| h.try_into().unwrap()),
                max_plain: r.file_size_bytes.unwrap(),
            },
        )
        .unwrap();
        wa::SyncdSnapshot::decode(&plain[..]).unwrap()
    }

    /// A patch a companion holding the account's key makes on top of the phone's state.
    fn companion_patch(a: &AppState, ci: usize, muts: &[PendingMutation]) -> Vec<u8> {
        let key = a.keys()[0].clone();
        let keys = MutationKeys::expand(&key.data[..]);
        encode_patch(
            coll(ci),
            &a.colls[ci].state,
            &key.id,
            &keys,
            muts,
            NOW,
            &mut rand::random,
        )
        .0
        .encode_to_vec()
    }

    #[test]
    fn a_snapshot_verifies_and_later_patches_come_in_pages_a_client_decodes() {
        let cdn = cdn();
        let mut a = seeded();
        a.set_page(2);
        let low = ci("regular_low");
        for i in 0..3 {
            a.phone_patch(low, &archive(&format!("1555000000{i}"), true), NOW);
        }
        // A fresh device (whatsmeow omits the version) gets the snapshot at 3, no patches.
        let (ans, changed) = a.answer(&iq(vec![fetch("regular_low", None, true)]), "1", &cdn);
        assert!(changed.is_empty());
        let c = only(&ans);
        assert_eq!(attr(&c, "version").as_deref(), Some("3"), "{c}");
        assert!(c.child("patches").is_none() && attr(&c, "has_more_patches").is_none());
        let snap = download(&cdn, &c);
        // The client's decoder takes it: MACs, LTHash and snapshot MAC all check out.
        let applied = decode_snapshot(Collection::RegularLow, &snap, &lookup(&a)).unwrap();
        assert_eq!(applied.version, 3);
        assert_eq!(applied.mutations.len(), 6, "3 archives and 3 unpins");
        let mut client = CollectionState::default();
        client.apply(&applied);
        // Five more: the device pages through them two at a time, decoding each.
        for i in 0..5 {
            a.phone_patch(low, &archive(&format!("1555000001{i}"), true), NOW);
        }
        let mut pages = Vec::new();
        loop {
            let (ans, _) = a.answer(
                &iq(vec![fetch("regular_low", Some(client.version), false)]),
                "2",
                &cdn,
            );
            let c = only(&ans);
            for p in patches(&c) {
                let applied =
                    decode_patch(Collection::RegularLow, &client, &p, &lookup(&a)).unwrap();
                client.apply(&applied);
            }
            assert_eq!(
                attr(&c, "version").unwrap(),
                client.version.to_string(),
                "the answer names the version it reaches"
            );
            pages.push(versions(&c));
            if attr(&c, "has_more_patches").is_none() {
                break;
            }
        }
        assert_eq!(pages, [vec![4, 5], vec![6, 7], vec![8]]);
        assert_eq!(
            client, a.colls[low].state,
            "the client's state is the phone's"
        );
        // Up to date: nothing more, the same version.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_low", Some(8), false)]), "3", &cdn);
        let c = only(&ans);
        assert_eq!(
            (attr(&c, "version").as_deref(), versions(&c).len()),
            (Some("8"), 0)
        );
        // Another fresh device (Baileys sends version 0) gets the snapshot made at 3 and the
        // first page after it.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_low", Some(0), true)]), "4", &cdn);
        let c = only(&ans);
        assert_eq!(download(&cdn, &c).version.unwrap().version, Some(3));
        assert_eq!(versions(&c), [4, 5]);
        assert_eq!(attr(&c, "has_more_patches").as_deref(), Some("true"));
        // An empty collection is at version 0 with nothing to serve.
        let (ans, _) = a.answer(&iq(vec![fetch("regular", None, true)]), "5", &cdn);
        let c = only(&ans);
        assert_eq!(attr(&c, "version").as_deref(), Some("0"));
        assert!(c.child_nodes().is_empty(), "{c}");
        // The seeded collections decode too, and say what was seeded.
        let (ans, _) = a.answer(
            &iq(vec![fetch("critical_unblock_low", None, true)]),
            "6",
            &cdn,
        );
        let snap = download(&cdn, &only(&ans));
        let applied = decode_snapshot(Collection::CriticalUnblockLow, &snap, &lookup(&a)).unwrap();
        let contact = applied.mutations[0]
            .data
            .value
            .as_ref()
            .unwrap()
            .contact_action
            .clone()
            .unwrap();
        assert_eq!(contact.full_name.as_deref(), Some("Bob Example"));
        assert_eq!(contact.lid_jid.as_deref(), Some("123456789012345@lid"));
    }

    #[test]
    fn a_stale_upload_gets_409_with_what_it_lacks_and_a_current_one_the_next_version() {
        let cdn = cdn();
        let mut a = seeded();
        let low = ci("regular_low");
        let patch = companion_patch(&a, low, &archive("15550000001", true));
        // Meanwhile the phone pins two chats.
        for i in 0..2 {
            let pin = muts(PhoneAction::Pin {
                chat: user(&format!("1555000009{i}")),
                pinned: true,
            });
            a.phone_patch(low, &pin, NOW);
        }
        let (ans, changed) = a.answer(&iq(vec![upload("regular_low", 0, &patch)]), "1", &cdn);
        assert!(changed.is_empty());
        let c = only(&ans);
        assert_eq!(attr(&c, "type").as_deref(), Some("error"), "{c}");
        assert_eq!(code(&c).as_deref(), Some("409"));
        assert_eq!(versions(&c), [1, 2], "the patches it lacks");
        assert_eq!(a.version("regular_low"), Some(2), "nothing stored");
        // Rebased on version 2, it is taken as 3; the phone reads it.
        let patch = companion_patch(&a, low, &archive("15550000001", true));
        let (ans, changed) = a.answer(&iq(vec![upload("regular_low", 2, &patch)]), "2", &cdn);
        let c = only(&ans);
        assert_eq!(
            (attr(&c, "type"), attr(&c, "version").as_deref()),
            (None, Some("3")),
            "{c}"
        );
        assert_eq!(
            changed,
            [Accepted {
                name: "regular_low",
                version: 3
            }]
        );
        let view = a.view("regular_low").unwrap();
        assert!(
            view.records
                .iter()
                .any(|r| r.index == ["archive", "15550000001@s.whatsapp.net"]
                    && r.value == serde_json::json!({ "archived": true }))
        );
        // The server set the version in the stored patch.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_low", Some(2), false)]), "3", &cdn);
        assert_eq!(versions(&only(&ans)), [3]);
        // The phone's next patch builds on the companion's; its recovery copy decodes.
        a.phone_patch(low, &archive("15550000001", false), NOW);
        let rec = a.recovery("regular_low").unwrap();
        let applied =
            crate::appstate::decode_recovery(Collection::RegularLow, &rec, &lookup(&a)).unwrap();
        assert_eq!(applied.version, 4);
        assert_eq!(applied.hash, a.colls[low].state.hash);
    }

    #[test]
    fn debug_shows_no_salt_and_no_key() {
        let salt = vec![0xAB; 16];
        let shown = format!("{:?}", PhoneAction::NctSalt(Some(salt)));
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab"),
            "{shown}"
        );
        let a = seeded();
        let k = &a.keys()[0];
        let shown = format!("{k:?}");
        assert!(
            !shown.contains(&crate::util::hex::encode(&k.data[..])),
            "{shown}"
        );
        let rec = format!("{:?}", a.colls[ci("regular_high")].plain);
        assert!(!rec.contains("9, 9, 9"), "{rec}");
    }

    #[test]
    fn bad_requests_are_refused_per_collection_or_whole() {
        let cdn = cdn();
        let mut a = seeded();
        let low = ci("regular_low");
        // Unknown collection: 404 for it, the others answered.
        let (ans, _) = a.answer(
            &iq(vec![
                fetch("regular_mid", Some(0), false),
                fetch("regular", Some(0), false),
            ]),
            "1",
            &cdn,
        );
        let sync = ans.child("sync").unwrap();
        assert_eq!(code(&sync.child_nodes()[0]).as_deref(), Some("404"));
        assert_eq!(
            attr(&sync.child_nodes()[0], "name").as_deref(),
            Some("regular_mid")
        );
        assert_eq!(code(&sync.child_nodes()[1]), None);
        // Ahead of the server: 400 for it.
        let ahead = Node::new("collection")
            .attr("name", "regular_low")
            .attr("version", "7");
        let (ans, _) = a.answer(&iq(vec![ahead]), "2", &cdn);
        assert_eq!(code(&only(&ans)).as_deref(), Some("400"));
        // A version that is not a number, the same collection twice, more than five, no
        // <sync>: the iq is refused.
        let nan = iq(vec![
            Node::new("collection")
                .attr("name", "regular_low")
                .attr("version", "x"),
        ]);
        let twice = iq(vec![
            fetch("regular", Some(0), false),
            fetch("regular", Some(0), false),
        ]);
        let six = iq((0..6).map(|_| fetch("regular", Some(0), false)).collect());
        for bad in [nan, twice, six, Node::new("iq")] {
            let (ans, _) = a.answer(&bad, "3", &cdn);
            assert_eq!(attr(&ans, "type").as_deref(), Some("error"), "{ans}");
        }
        // Malformed, oversized, two patches, no MACs, an index twice: 400, nothing stored.
        let good = companion_patch(&a, low, &archive("15550000001", true));
        let mut no_mac = wa::SyncdPatch::decode(&good[..]).unwrap();
        no_mac.patch_mac = None;
        let mut twice = wa::SyncdPatch::decode(&good[..]).unwrap();
        twice.mutations.push(twice.mutations[0].clone());
        for bad in [
            upload("regular_low", 0, b"\xff\xff\xff"),
            upload("regular_low", 0, &vec![0u8; MAX_PATCH_BYTES + 1]),
            upload("regular_low", 0, &no_mac.encode_to_vec()),
            upload("regular_low", 0, &twice.encode_to_vec()),
            upload("regular_low", 0, &wa::SyncdPatch::default().encode_to_vec()),
            fetch("regular_low", Some(0), false).children(vec![
                Node::new("patch").bytes(good.clone()),
                Node::new("patch").bytes(good.clone()),
            ]),
        ] {
            let (ans, changed) = a.answer(&iq(vec![bad]), "4", &cdn);
            assert_eq!(code(&only(&ans)).as_deref(), Some("400"), "{ans}");
            assert!(changed.is_empty());
        }
        assert_eq!(a.version("regular_low"), Some(0));
    }

    #[test]
    fn patches_kept_are_bounded_and_older_versions_need_a_snapshot() {
        let cdn = cdn();
        let mut a = seeded();
        let high = ci("regular_high");
        let n = MAX_PATCHES_KEPT + 10;
        for i in 0..n {
            let mute = muts(PhoneAction::Mute {
                chat: user("15550000001"),
                until_ms: Some(NOW + i as i64),
            });
            a.phone_patch(high, &mute, NOW);
        }
        let last = 1 + n as u64;
        assert_eq!(a.version("regular_high"), Some(last));
        assert_eq!(a.colls[high].patches.len(), MAX_PATCHES_KEPT);
        // Version 1 (the seed) is older than the oldest kept patch: 404, fetch a snapshot.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "1", &cdn);
        assert_eq!(code(&only(&ans)).as_deref(), Some("404"));
        // The snapshot is current; the mute's one record replaced itself each time.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "2", &cdn);
        let snap = download(&cdn, &only(&ans));
        let applied = decode_snapshot(Collection::RegularHigh, &snap, &lookup(&a)).unwrap();
        assert_eq!(applied.version, last);
        assert_eq!(applied.mutations.len(), 2, "the salt and one mute");
        assert_eq!(a.nct_salt(), Some(&[9u8; 32][..]));
    }

    #[test]
    fn corruption_breaks_the_served_copy_and_the_salt_follows_set_and_remove() {
        let cdn = cdn();
        let mut a = seeded();
        let high = ci("regular_high");
        // A device synced at version 1.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "0", &cdn);
        let snap = download(&cdn, &only(&ans));
        let mut at_1 = CollectionState::default();
        at_1.apply(&decode_snapshot(Collection::RegularHigh, &snap, &lookup(&a)).unwrap());
        a.phone_patch(high, &muts(PhoneAction::NctSalt(Some(vec![1; 16]))), NOW);
        assert_eq!(a.nct_salt(), Some(&[1u8; 16][..]));
        // Its next fetch brings the patch; a client verifies it, until the server damages it.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "1", &cdn);
        let p = &patches(&only(&ans))[0];
        assert!(decode_patch(Collection::RegularHigh, &at_1, p, &lookup(&a)).is_ok());
        assert!(a.corrupt("regular_high", Corruption::Patch));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "1", &cdn);
        let p = &patches(&only(&ans))[0];
        assert!(
            decode_patch(Collection::RegularHigh, &at_1, p, &lookup(&a)).is_err(),
            "a client refuses the damaged patch"
        );
        // The snapshot is still good, until it is corrupted too.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "2", &cdn);
        let snap = download(&cdn, &only(&ans));
        assert!(decode_snapshot(Collection::RegularHigh, &snap, &lookup(&a)).is_ok());
        assert!(a.corrupt("regular_high", Corruption::Snapshot));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "3", &cdn);
        let snap = download(&cdn, &only(&ans));
        assert!(decode_snapshot(Collection::RegularHigh, &snap, &lookup(&a)).is_err());
        // The phone's recovery still says what is true.
        let rec = a.recovery("regular_high").unwrap();
        let applied =
            crate::appstate::decode_recovery(Collection::RegularHigh, &rec, &lookup(&a)).unwrap();
        assert_eq!(applied.version, 2);
        // A dropped patch leaves a gap the server does not see.
        a.phone_patch(high, &muts(PhoneAction::NctSalt(None)), NOW);
        assert_eq!(a.nct_salt(), None);
        assert!(a.corrupt("regular_high", Corruption::DropPatch));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "4", &cdn);
        assert_eq!(versions(&only(&ans)), [2]);
    }
}
