//! One account's app state (syncd, CLIENT-FEATURES §3) on both sides the simulator plays.
//! The server's side holds, per collection, the version, the encrypted records (what a
//! snapshot is made of), the recent patches with the version it assigned, and the latest
//! snapshot as an `md-app-state` blob on the CDN; it never holds keys, so patches are opaque
//! to it beyond their shape, as on WhatsApp. The phone's side (the primary) owns the sync keys
//! and the plaintext: it applies every accepted patch, encodes its own, and answers recovery.
//! The `w:sync:app:state` iq is answered here; who is told afterwards is `phone_appstate.rs`.

use std::collections::{BTreeMap, VecDeque};

use prost::Message as _;
use zeroize::Zeroizing;

use super::cdn::Cdn;
use super::syncd_crypto::{self as crypto, LTHASH_LEN, MutationKeys};
use crate::binary::Node;
use crate::proto::wa;

/// The five collections (whatsmeow appstate/keys.go `WAPatchName*`).
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
#[derive(Debug, Clone)]
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
    version: u64,
    /// Server: the encrypted records by index MAC.
    records: BTreeMap<[u8; 32], wa::SyncdRecord>,
    /// Server: (version, encoded SyncdPatch with its version set), oldest first.
    patches: VecDeque<(u64, Vec<u8>)>,
    /// Server: the latest snapshotMAC and key id (a snapshot at `version` carries them).
    mac: Option<(Vec<u8>, Vec<u8>)>,
    /// Server: the snapshot blob made last, (version, ExternalBlobReference bytes).
    blob: Option<(u64, Vec<u8>)>,
    /// Phone: its LTHash and records.
    hash: Option<[u8; LTHASH_LEN]>,
    plain: BTreeMap<[u8; 32], PlainRecord>,
}

/// An account's app state: keys, collections and the page size.
pub struct AppState {
    keys: Vec<SyncKey>,
    colls: [Coll; 5],
    page: usize,
    seeded: bool,
    /// The NCT salt the phone last set (`nct_salt_sync`), for the cstoken check.
    nct_salt: Option<Vec<u8>>,
}

impl Default for AppState {
    fn default() -> AppState {
        AppState {
            keys: Vec::new(),
            colls: Default::default(),
            page: DEFAULT_PAGE,
            seeded: false,
            nct_salt: None,
        }
    }
}

/// A mutation the phone makes.
#[derive(Debug, Clone)]
pub struct PhoneMutation {
    /// SET (false) or REMOVE (true).
    pub remove: bool,
    /// The index (JSON array elements).
    pub index: Vec<String>,
    /// The value (its timestamp is set when sealing).
    pub value: wa::SyncActionValue,
    /// The action version (CLIENT-FEATURES §3.6 table).
    pub version: i32,
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
/// and a key id.
fn well_formed(p: &wa::SyncdPatch) -> bool {
    let key = |k: &Option<wa::KeyId>| {
        k.as_ref()
            .and_then(|k| k.id.as_ref())
            .is_some_and(|i| !i.is_empty() && i.len() <= 64)
    };
    p.snapshot_mac.as_ref().is_some_and(|m| m.len() == 32)
        && p.patch_mac.as_ref().is_some_and(|m| m.len() == 32)
        && key(&p.key_id)
        && p.external_mutations.is_none()
        && !p.mutations.is_empty()
        && p.mutations.iter().all(|m| {
            matches!(m.operation, None | Some(0) | Some(1))
                && m.record.as_ref().is_some_and(|r| {
                    index_mac_of(r).is_some() && value_mac_of(r).is_some() && key(&r.key_id)
                })
        })
}

fn coll_error(name: &str, code: u16, text: &str) -> Node {
    Node::new("collection")
        .attr("name", name.to_owned())
        .attr("type", "error")
        .children(vec![
            Node::new("error")
                .attr("code", code.to_string())
                .attr("text", text.to_owned()),
        ])
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

    /// A collection's version.
    pub fn version(&self, name: &str) -> Option<u64> {
        Some(self.colls[collection_index(name)?].version)
    }

    /// The phone's records of a collection (index MAC order), what it knows they say.
    pub fn records(&self, name: &str) -> Option<Vec<PlainRecord>> {
        Some(
            self.colls[collection_index(name)?]
                .plain
                .values()
                .cloned()
                .collect(),
        )
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

    /// The phone seeds its collections once (at its first companion's linking): each given
    /// mutation lands in a snapshot at version 1 of its collection.
    pub(crate) fn seed(&mut self, muts: Vec<(usize, PhoneMutation)>, now_ms: i64) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        let key = self.ensure_key(now_ms).clone();
        let keys = MutationKeys::expand(&key.data[..]);
        for (ci, m) in muts {
            let c = &mut self.colls[ci];
            let sealed = seal(&keys, &key.id, &m, now_ms);
            let hash = c.hash.get_or_insert([0; LTHASH_LEN]);
            if let Some(old) = c.plain.get(&sealed.index_mac) {
                crypto::lthash_apply(hash, &old.value_mac, false);
            }
            crypto::lthash_apply(hash, &sealed.value_mac, true);
            note_salt(&mut self.nct_salt, &m);
            c.plain.insert(
                sealed.index_mac,
                PlainRecord {
                    index: m.index.clone(),
                    data: Some(sealed.data),
                    value_mac: sealed.value_mac,
                    key_id: key.id.clone(),
                },
            );
            c.records.insert(sealed.index_mac, sealed.record);
        }
        for (ci, c) in self.colls.iter_mut().enumerate() {
            if let Some(hash) = c.hash {
                c.version = 1;
                let mac = crypto::snapshot_mac(&keys, &hash, 1, COLLECTIONS[ci]);
                c.mac = Some((mac.to_vec(), key.id.clone()));
            }
        }
    }

    /// The phone encodes `muts` as a patch on `name` and the server accepts it like any
    /// upload: returns the new version.
    pub(crate) fn phone_patch(
        &mut self,
        ci: usize,
        muts: &[PhoneMutation],
        now_ms: i64,
    ) -> Option<u64> {
        let key = self.ensure_key(now_ms).clone();
        let keys = MutationKeys::expand(&key.data[..]);
        let c = &self.colls[ci];
        let mut hash = c.hash.unwrap_or([0; LTHASH_LEN]);
        let mut mutations = Vec::with_capacity(muts.len());
        let mut value_macs = Vec::with_capacity(muts.len());
        for m in muts {
            let s = seal(&keys, &key.id, m, now_ms);
            if let Some(old) = c.plain.get(&s.index_mac) {
                crypto::lthash_apply(&mut hash, &old.value_mac, false);
            }
            if !m.remove {
                crypto::lthash_apply(&mut hash, &s.value_mac, true);
            }
            value_macs.push(s.value_mac);
            mutations.push(wa::SyncdMutation {
                operation: Some(i32::from(m.remove)),
                record: Some(s.record),
            });
        }
        let version = c.version + 1;
        let snap = crypto::snapshot_mac(&keys, &hash, version, COLLECTIONS[ci]);
        let patch = wa::SyncdPatch {
            mutations,
            snapshot_mac: Some(snap.to_vec()),
            patch_mac: Some(
                crypto::patch_mac(&keys, &snap, &value_macs, version, COLLECTIONS[ci]).to_vec(),
            ),
            key_id: Some(wa::KeyId {
                id: Some(key.id.clone()),
            }),
            ..Default::default()
        };
        self.accept(ci, patch).ok()
    }

    /// The server stores `patch` at the next version, and the phone applies it.
    fn accept(&mut self, ci: usize, mut patch: wa::SyncdPatch) -> Result<u64, (u16, &'static str)> {
        let c = &mut self.colls[ci];
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
        let key_id = patch
            .key_id
            .as_ref()
            .and_then(|k| k.id.clone())
            .unwrap_or_default();
        // The phone's view first (it reads the records before the server keeps them).
        let keys = self.key(&key_id);
        let c = &mut self.colls[ci];
        let mut hash = c.hash.unwrap_or([0; LTHASH_LEN]);
        for m in &patch.mutations {
            let Some(r) = m.record.as_ref() else { continue };
            let (Some(imac), Some(vmac)) = (index_mac_of(r), value_mac_of(r)) else {
                continue;
            };
            let remove = op_of(m) == 1;
            // The previous value goes out of the hash, the new one in (whatsmeow
            // `validatePatch`; a SET and a REMOVE of one index in one patch follow the
            // look-back, which the phone's own patches never need).
            if let Some(old) = c.plain.remove(&imac) {
                crypto::lthash_apply(&mut hash, &old.value_mac, false);
                if remove && old.index.len() == 1 && old.index[0] == "nct_salt_sync" {
                    self.nct_salt = None;
                }
            }
            if remove {
                c.records.remove(&imac);
                continue;
            }
            crypto::lthash_apply(&mut hash, &vmac, true);
            let data = keys.as_ref().and_then(|k| crypto::open(k, 0, r).ok());
            if data.is_none() {
                tracing::debug!(
                    collection = COLLECTIONS[ci],
                    "simulated phone cannot open a record"
                );
            }
            let index = data
                .as_ref()
                .and_then(|d| serde_json::from_slice::<Vec<String>>(d.index.as_deref()?).ok())
                .unwrap_or_default();
            if index.len() == 1 && index[0] == "nct_salt_sync" {
                self.nct_salt = data
                    .as_ref()
                    .and_then(|d| {
                        d.value
                            .as_ref()?
                            .nct_salt_sync_action
                            .as_ref()?
                            .salt
                            .clone()
                    })
                    .filter(|s| !s.is_empty());
            }
            c.plain.insert(
                imac,
                PlainRecord {
                    index,
                    data,
                    value_mac: vmac,
                    key_id: r
                        .key_id
                        .as_ref()
                        .and_then(|k| k.id.clone())
                        .unwrap_or_default(),
                },
            );
            c.records.insert(imac, r.clone());
        }
        let c = &mut self.colls[ci];
        if let Some(k) = &keys
            && patch.snapshot_mac.as_deref()
                != Some(&crypto::snapshot_mac(k, &hash, version, COLLECTIONS[ci])[..])
        {
            tracing::debug!(
                collection = COLLECTIONS[ci],
                version,
                "simulated phone sees a snapshotMAC that does not match"
            );
        }
        c.hash = Some(hash);
        c.version = version;
        c.mac = Some((patch.snapshot_mac.clone().unwrap_or_default(), key_id));
        c.patches.push_back((version, patch.encode_to_vec()));
        while c.patches.len() > MAX_PATCHES_KEPT {
            c.patches.pop_front();
        }
        Ok(version)
    }

    /// The patches of collection `ci` after `from`, at most a page: (patch nodes, more left).
    fn page_after(&self, ci: usize, from: u64) -> (Vec<Node>, bool) {
        let c = &self.colls[ci];
        let mut after = c.patches.iter().filter(|(v, _)| *v > from);
        let out: Vec<Node> = after
            .by_ref()
            .take(self.page)
            .map(|(_, b)| Node::new("patch").bytes(b.clone()))
            .collect();
        (out, after.next().is_some())
    }

    /// Whether the kept patches reach back to `from` (every version after it is kept or
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
        match how {
            Corruption::DropPatch => c.patches.pop_back().is_some(),
            Corruption::Patch | Corruption::Snapshot => {
                let Some((_, bytes)) = c.patches.back_mut() else {
                    if how == Corruption::Snapshot
                        && let Some((m, _)) = c.mac.as_mut()
                        && !m.is_empty()
                    {
                        m[0] ^= 0x80;
                        c.blob = None;
                        return true;
                    }
                    return false;
                };
                let Ok(mut p) = wa::SyncdPatch::decode(&bytes[..]) else {
                    return false;
                };
                if let Some(m) = p.snapshot_mac.as_mut().filter(|m| !m.is_empty()) {
                    m[0] ^= 0x80;
                }
                *bytes = p.encode_to_vec();
                if how == Corruption::Snapshot
                    && let Some((m, _)) = c.mac.as_mut()
                    && !m.is_empty()
                {
                    m[0] ^= 0x80;
                    c.blob = None;
                }
                true
            }
        }
    }

    /// The phone's plaintext copy of a collection (CLIENT-FEATURES §3.7): every record it could
    /// open, its LTHash and version.
    pub fn recovery(&self, name: &str) -> Option<wa::SyncdSnapshotRecovery> {
        let c = &self.colls[collection_index(name)?];
        Some(wa::SyncdSnapshotRecovery {
            version: Some(wa::SyncdVersion {
                version: Some(c.version),
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
            collection_lthash: Some(c.hash.unwrap_or([0; LTHASH_LEN]).to_vec()),
        })
    }

    /// Answers a `<iq xmlns="w:sync:app:state" type="set">`: fetches (snapshot when asked,
    /// else patches after the version, paged) and uploads (409 with the missing patches when
    /// the sender's version is stale). Returns the answer and the collections that changed.
    pub(crate) fn answer(&mut self, node: &Node, id: &str, cdn: &Cdn) -> (Node, Vec<Accepted>) {
        let bad = || (super::iq::error(id, 400, "bad-request"), Vec::new());
        let Some(sync) = node.child("sync") else {
            return bad();
        };
        let asked: Vec<&Node> = sync
            .child_nodes()
            .iter()
            .filter(|c| c.tag == "collection")
            .collect();
        if asked.is_empty() || asked.len() > MAX_COLLECTIONS_PER_IQ {
            return bad();
        }
        let names: Vec<String> = asked
            .iter()
            .map(|c| {
                c.get_str("name")
                    .map(|n| n.into_owned())
                    .unwrap_or_default()
            })
            .collect();
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return bad();
        }
        let mut out = Vec::with_capacity(asked.len());
        let mut changed = Vec::new();
        for (c, name) in asked.into_iter().zip(names) {
            out.push(self.collection(c, &name, cdn, &mut changed));
        }
        (
            super::iq::result(id, vec![Node::new("sync").children(out)]),
            changed,
        )
    }

    fn collection(&mut self, c: &Node, name: &str, cdn: &Cdn, changed: &mut Vec<Accepted>) -> Node {
        // An unknown collection is fatal for the asker (whatsapp-rust `parse_collection_error`:
        // 400 and 404 are not retried).
        let Some(ci) = collection_index(name) else {
            return coll_error(name, 404, "item-not-found");
        };
        let version = match c.get_str("version") {
            None => Some(0),
            Some(v) => v.parse::<u64>().ok(),
        };
        let Some(from) = version else {
            return coll_error(name, 400, "bad-request");
        };
        let current = self.colls[ci].version;
        // A device cannot be ahead of the server.
        if from > current {
            return coll_error(name, 400, "bad-request");
        }
        let patches: Vec<&Node> = c
            .child_nodes()
            .iter()
            .filter(|p| p.tag == "patch")
            .collect();
        if !patches.is_empty() {
            return self.upload(ci, from, &patches, changed);
        }
        let wants_snapshot = c.get_str("return_snapshot").as_deref() == Some("true");
        let mut n = Node::new("collection").attr("name", name.to_owned());
        let mut children = Vec::new();
        let mut start = from;
        if wants_snapshot {
            if let Some((v, blob)) = self.snapshot(ci, cdn) {
                children.push(Node::new("snapshot").bytes(blob));
                start = v;
            } else if current > 0 {
                // The CDN refused the blob: the device may try again.
                return coll_error(name, 503, "service-unavailable");
            }
        } else if !self.covers(ci, from) {
            // Older than the patches kept: only a snapshot can bring the device up to date.
            return coll_error(name, 404, "item-not-found");
        }
        let (page, more) = self.page_after(ci, start);
        let reached = self.colls[ci]
            .patches
            .iter()
            .filter(|(v, _)| *v > start)
            .take(page.len())
            .last()
            .map_or(start, |(v, _)| *v);
        n = n.attr("version", reached.to_string());
        if more {
            n = n.attr("has_more_patches", "true");
        }
        if !page.is_empty() {
            children.push(Node::new("patches").children(page));
        }
        if children.is_empty() {
            n
        } else {
            n.children(children)
        }
    }

    fn upload(
        &mut self,
        ci: usize,
        from: u64,
        patches: &[&Node],
        changed: &mut Vec<Accepted>,
    ) -> Node {
        let name = COLLECTIONS[ci];
        // whatsmeow and Baileys send one patch per collection per iq.
        let [p] = patches else {
            return coll_error(name, 400, "bad-request");
        };
        let Some(bytes) = p
            .content_bytes()
            .filter(|b| !b.is_empty() && b.len() <= MAX_PATCH_BYTES)
        else {
            return coll_error(name, 400, "bad-request");
        };
        let Ok(patch) = wa::SyncdPatch::decode(&bytes[..]) else {
            return coll_error(name, 400, "bad-request");
        };
        if !well_formed(&patch) {
            return coll_error(name, 400, "bad-request");
        }
        let current = self.colls[ci].version;
        if from != current {
            // Stale: the device gets what it lacks and tries again (whatsmeow `sendAppState`
            // applies the patches of the 409 and retries once).
            if !self.covers(ci, from) {
                return coll_error(name, 404, "item-not-found");
            }
            let (page, more) = self.page_after(ci, from);
            let mut n = Node::new("collection")
                .attr("name", name)
                .attr("type", "error")
                .attr("version", current.to_string());
            if more {
                n = n.attr("has_more_patches", "true");
            }
            return n.children(vec![
                Node::new("error")
                    .attr("code", "409")
                    .attr("text", "conflict"),
                Node::new("patches").children(page),
            ]);
        }
        match self.accept(ci, patch) {
            Ok(v) => {
                changed.push(Accepted { name, version: v });
                Node::new("collection")
                    .attr("name", name)
                    .attr("version", v.to_string())
            }
            Err((code, text)) => coll_error(name, code, text),
        }
    }
}

/// Notes the salt a phone mutation sets or removes.
fn note_salt(salt: &mut Option<Vec<u8>>, m: &PhoneMutation) {
    if m.index.len() == 1 && m.index[0] == "nct_salt_sync" {
        *salt = if m.remove {
            None
        } else {
            m.value
                .nct_salt_sync_action
                .as_ref()
                .and_then(|a| a.salt.clone())
                .filter(|s| !s.is_empty())
        };
    }
}

struct SealedData {
    record: wa::SyncdRecord,
    index_mac: [u8; 32],
    value_mac: [u8; 32],
    data: wa::SyncActionData,
}

fn seal(keys: &MutationKeys, key_id: &[u8], m: &PhoneMutation, now_ms: i64) -> SealedData {
    let mut value = m.value.clone();
    value.timestamp = Some(now_ms);
    let data = wa::SyncActionData {
        index: Some(serde_json::to_vec(&m.index).unwrap_or_default()),
        value: Some(value),
        padding: Some(Vec::new()),
        version: Some(m.version),
    };
    let s = crypto::seal(keys, key_id, i32::from(m.remove), &data);
    SealedData {
        record: s.record,
        index_mac: s.index_mac,
        value_mac: s.value_mac,
        data,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneAction {
    /// Archive (true) or unarchive a chat; archiving also unpins it (whatsmeow `BuildArchive`).
    Archive {
        /// The chat JID.
        chat: String,
        /// Archived or not.
        archived: bool,
    },
    /// Mute a chat until `until_ms` (-1: forever), or unmute it (None).
    Mute {
        /// The chat JID.
        chat: String,
        /// Unix ms, -1 forever, None unmuted.
        until_ms: Option<i64>,
    },
    /// Pin (true) or unpin a chat.
    Pin {
        /// The chat JID.
        chat: String,
        /// Pinned or not.
        pinned: bool,
    },
    /// Mark a chat read (true) or unread.
    MarkRead {
        /// The chat JID.
        chat: String,
        /// Read or not.
        read: bool,
    },
    /// Add or rename a contact (indexed by its PN JID).
    Contact {
        /// The contact's PN JID.
        jid: String,
        /// Full name.
        full_name: String,
        /// First name, if any.
        first_name: Option<String>,
        /// Its LID JID, if known.
        lid: Option<String>,
    },
    /// Set (Some) or remove (None) the account's NCT salt.
    NctSalt(Option<Vec<u8>>),
}

fn set(index: Vec<String>, version: i32, value: wa::SyncActionValue) -> PhoneMutation {
    PhoneMutation {
        remove: false,
        index,
        value,
        version,
    }
}

impl PhoneAction {
    /// The collection and mutations it makes (index layouts and action versions:
    /// CLIENT-FEATURES §3.6 table).
    pub fn mutations(&self) -> (usize, Vec<PhoneMutation>) {
        let v = wa::SyncActionValue::default;
        let s = |x: &str| x.to_owned();
        let ci = |n: &str| collection_index(n).unwrap_or(0);
        match self {
            PhoneAction::Archive { chat, archived } => {
                let mut out = vec![set(
                    vec![s("archive"), chat.clone()],
                    3,
                    wa::SyncActionValue {
                        archive_chat_action: Some(wa::ArchiveChatAction {
                            archived: Some(*archived),
                            ..Default::default()
                        }),
                        ..v()
                    },
                )];
                if *archived {
                    out.push(pin_mutation(chat, false));
                }
                (ci("regular_low"), out)
            }
            PhoneAction::Mute { chat, until_ms } => (
                ci("regular_high"),
                vec![set(
                    vec![s("mute"), chat.clone()],
                    2,
                    wa::SyncActionValue {
                        mute_action: Some(wa::MuteAction {
                            muted: Some(until_ms.is_some()),
                            mute_end_timestamp: *until_ms,
                            ..Default::default()
                        }),
                        ..v()
                    },
                )],
            ),
            PhoneAction::Pin { chat, pinned } => {
                (ci("regular_low"), vec![pin_mutation(chat, *pinned)])
            }
            PhoneAction::MarkRead { chat, read } => (
                ci("regular_low"),
                vec![set(
                    vec![s("markChatAsRead"), chat.clone()],
                    3,
                    wa::SyncActionValue {
                        mark_chat_as_read_action: Some(wa::MarkChatAsReadAction {
                            read: Some(*read),
                            ..Default::default()
                        }),
                        ..v()
                    },
                )],
            ),
            PhoneAction::Contact {
                jid,
                full_name,
                first_name,
                lid,
            } => (
                ci("critical_unblock_low"),
                vec![set(
                    vec![s("contact"), jid.clone()],
                    2,
                    wa::SyncActionValue {
                        contact_action: Some(wa::ContactAction {
                            full_name: Some(full_name.clone()),
                            first_name: first_name.clone(),
                            lid_jid: lid.clone(),
                            save_on_primary_addressbook: Some(true),
                            pn_jid: Some(jid.clone()),
                            ..Default::default()
                        }),
                        ..v()
                    },
                )],
            ),
            PhoneAction::NctSalt(salt) => {
                let index = vec![s("nct_salt_sync")];
                let value = wa::SyncActionValue {
                    nct_salt_sync_action: salt.as_ref().map(|s| wa::NctSaltSyncAction {
                        salt: Some(s.clone()),
                    }),
                    ..v()
                };
                (
                    ci("regular_high"),
                    vec![PhoneMutation {
                        remove: salt.is_none(),
                        index,
                        value,
                        version: 1,
                    }],
                )
            }
        }
    }
}

fn pin_mutation(chat: &str, pinned: bool) -> PhoneMutation {
    set(
        vec!["pin_v1".to_owned(), chat.to_owned()],
        5,
        wa::SyncActionValue {
            pin_action: Some(wa::PinAction {
                pinned: Some(pinned),
            }),
            ..Default::default()
        },
    )
}

/// The push-name setting (`["setting_pushName"]`, critical_block, version 1).
pub fn push_name(name: &str) -> (usize, PhoneMutation) {
    (
        0,
        set(
            vec!["setting_pushName".to_owned()],
            1,
            wa::SyncActionValue {
                push_name_setting: Some(wa::PushNameSetting {
                    name: Some(name.to_owned()),
                }),
                ..Default::default()
            },
        ),
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
    use crate::util::clock::SystemClock;

    const NOW: i64 = 1_700_000_000_000;

    fn cdn() -> Cdn {
        Cdn::new("127.0.0.1:1".into(), Arc::new(SystemClock)).unwrap()
    }

    fn archive(chat: &str, archived: bool) -> PhoneAction {
        PhoneAction::Archive {
            chat: chat.into(),
            archived,
        }
    }

    /// An account seeded with a contact, a push name and a salt.
    fn seeded() -> AppState {
        let mut a = AppState::default();
        let mut seed: Vec<(usize, PhoneMutation)> = Vec::new();
        let (ci, ms) = PhoneAction::Contact {
            jid: "19995550101@s.whatsapp.net".into(),
            full_name: "Bob Example".into(),
            first_name: Some("Bob".into()),
            lid: Some("123456789012345@lid".into()),
        }
        .mutations();
        seed.extend(ms.into_iter().map(|m| (ci, m)));
        seed.push(push_name("Alice"));
        let (ci, ms) = PhoneAction::NctSalt(Some(vec![9; 32])).mutations();
        seed.extend(ms.into_iter().map(|m| (ci, m)));
        a.seed(seed, NOW);
        a
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

    fn versions(c: &Node) -> Vec<u64> {
        c.child("patches")
            .map(|p| {
                p.child_nodes()
                    .iter()
                    .map(|n| {
                        let p = wa::SyncdPatch::decode(&n.content_bytes().unwrap()[..]).unwrap();
                        p.version.unwrap().version.unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default()
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
    fn companion_patch(a: &AppState, ci: usize, action: &PhoneAction) -> Vec<u8> {
        let key = a.keys()[0].clone();
        let keys = MutationKeys::expand(&key.data[..]);
        let c = &a.colls[ci];
        let mut hash = c.hash.unwrap_or([0; LTHASH_LEN]);
        let (_, muts) = action.mutations();
        let mut mutations = Vec::new();
        let mut macs = Vec::new();
        for m in &muts {
            let s = seal(&keys, &key.id, m, NOW);
            if let Some(old) = c.plain.get(&s.index_mac) {
                crypto::lthash_apply(&mut hash, &old.value_mac, false);
            }
            crypto::lthash_apply(&mut hash, &s.value_mac, true);
            macs.push(s.value_mac);
            mutations.push(wa::SyncdMutation {
                operation: Some(0),
                record: Some(s.record),
            });
        }
        let v = c.version + 1;
        let snap = crypto::snapshot_mac(&keys, &hash, v, COLLECTIONS[ci]);
        wa::SyncdPatch {
            mutations,
            snapshot_mac: Some(snap.to_vec()),
            patch_mac: Some(crypto::patch_mac(&keys, &snap, &macs, v, COLLECTIONS[ci]).to_vec()),
            key_id: Some(wa::KeyId {
                id: Some(key.id.clone()),
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_snapshot_verifies_and_later_patches_come_in_pages() {
        let cdn = cdn();
        let mut a = seeded();
        a.set_page(2);
        let low = collection_index("regular_low").unwrap();
        for i in 0..3 {
            a.phone_patch(
                low,
                &archive(&format!("1555000000{i}@s.whatsapp.net"), true)
                    .mutations()
                    .1,
                NOW,
            );
        }
        // A fresh device (whatsmeow omits the version) gets the snapshot at 3, no patches.
        let (ans, changed) = a.answer(&iq(vec![fetch("regular_low", None, true)]), "1", &cdn);
        assert!(changed.is_empty());
        let c = only(&ans);
        assert_eq!(attr(&c, "version").as_deref(), Some("3"), "{c}");
        assert!(c.child("patches").is_none() && attr(&c, "has_more_patches").is_none());
        let snap = download(&cdn, &c);
        assert_eq!(snap.version.unwrap().version, Some(3));
        // Its MAC is the LTHash of its records' value MACs, as a client checks it.
        let keys = MutationKeys::expand(&a.keys()[0].data[..]);
        let mut hash = [0u8; LTHASH_LEN];
        for r in &snap.records {
            crypto::lthash_apply(&mut hash, &value_mac_of(r).unwrap(), true);
            let d = crypto::open(&keys, 0, r).unwrap();
            assert!(d.index.unwrap().starts_with(br#"["#));
        }
        assert_eq!(snap.records.len(), 6, "3 archives and 3 unpins");
        assert_eq!(
            snap.mac.as_deref(),
            Some(&crypto::snapshot_mac(&keys, &hash, 3, "regular_low")[..])
        );
        // Five more: the device pages through them two at a time.
        for i in 0..5 {
            a.phone_patch(
                low,
                &archive(&format!("1555000001{i}@s.whatsapp.net"), true)
                    .mutations()
                    .1,
                NOW,
            );
        }
        let mut from = 3;
        let mut pages = Vec::new();
        loop {
            let (ans, _) = a.answer(
                &iq(vec![fetch("regular_low", Some(from), false)]),
                "2",
                &cdn,
            );
            let c = only(&ans);
            let vs = versions(&c);
            from = attr(&c, "version").unwrap().parse().unwrap();
            assert_eq!(
                Some(&from),
                vs.last(),
                "the answer names the version it reaches"
            );
            let more = attr(&c, "has_more_patches").is_some();
            pages.push(vs);
            if !more {
                break;
            }
        }
        assert_eq!(pages, [vec![4, 5], vec![6, 7], vec![8]]);
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
    }

    #[test]
    fn a_stale_upload_gets_409_with_what_it_lacks_and_a_current_one_the_next_version() {
        let cdn = cdn();
        let mut a = seeded();
        let low = collection_index("regular_low").unwrap();
        let patch = companion_patch(&a, low, &archive("15550000001@s.whatsapp.net", true));
        // Meanwhile the phone pins two chats.
        for i in 0..2 {
            a.phone_patch(
                low,
                &PhoneAction::Pin {
                    chat: format!("1555000009{i}@s.whatsapp.net"),
                    pinned: true,
                }
                .mutations()
                .1,
                NOW,
            );
        }
        let (ans, changed) = a.answer(&iq(vec![upload("regular_low", 0, &patch)]), "1", &cdn);
        assert!(changed.is_empty());
        let c = only(&ans);
        assert_eq!(attr(&c, "type").as_deref(), Some("error"), "{c}");
        assert_eq!(code(&c).as_deref(), Some("409"));
        assert_eq!(versions(&c), [1, 2], "the patches it lacks");
        assert_eq!(a.version("regular_low"), Some(2), "nothing stored");
        // Rebased on version 2, it is taken as 3; the phone reads it.
        let patch = companion_patch(&a, low, &archive("15550000001@s.whatsapp.net", true));
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
        // The phone's next patch builds on the companion's: its snapshotMAC matches the
        // phone's hash, which a recovery carries.
        a.phone_patch(
            low,
            &archive("15550000001@s.whatsapp.net", false).mutations().1,
            NOW,
        );
        let rec = a.recovery("regular_low").unwrap();
        assert_eq!(rec.version.unwrap().version, Some(4));
        let keys = MutationKeys::expand(&a.keys()[0].data[..]);
        let hash: [u8; LTHASH_LEN] = rec.collection_lthash.unwrap().try_into().unwrap();
        let (ans, _) = a.answer(&iq(vec![fetch("regular_low", Some(3), false)]), "4", &cdn);
        let c = only(&ans);
        let last = wa::SyncdPatch::decode(
            &c.child("patches").unwrap().child_nodes()[0]
                .content_bytes()
                .unwrap()[..],
        )
        .unwrap();
        assert_eq!(
            last.snapshot_mac.as_deref(),
            Some(&crypto::snapshot_mac(&keys, &hash, 4, "regular_low")[..])
        );
    }

    #[test]
    fn bad_requests_are_refused_per_collection_or_whole() {
        let cdn = cdn();
        let mut a = seeded();
        let low = collection_index("regular_low").unwrap();
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
        // Ahead of the server, or not a number: 400.
        for v in ["7", "x"] {
            let n = Node::new("collection")
                .attr("name", "regular_low")
                .attr("version", v);
            let (ans, _) = a.answer(&iq(vec![n]), "2", &cdn);
            assert_eq!(code(&only(&ans)).as_deref(), Some("400"), "version {v}");
        }
        // The same collection twice, more than five, no <sync>: the iq is refused.
        let twice = iq(vec![
            fetch("regular", Some(0), false),
            fetch("regular", Some(0), false),
        ]);
        let six = iq((0..6).map(|_| fetch("regular", Some(0), false)).collect());
        for bad in [twice, six, Node::new("iq")] {
            let (ans, _) = a.answer(&bad, "3", &cdn);
            assert_eq!(attr(&ans, "type").as_deref(), Some("error"), "{ans}");
        }
        // Malformed, oversized, two patches, no MACs: 400, nothing stored.
        let good = companion_patch(&a, low, &archive("15550000001@s.whatsapp.net", true));
        let mut no_mac = wa::SyncdPatch::decode(&good[..]).unwrap();
        no_mac.patch_mac = None;
        for bad in [
            upload("regular_low", 0, b"\xff\xff\xff"),
            upload("regular_low", 0, &vec![0u8; MAX_PATCH_BYTES + 1]),
            upload("regular_low", 0, &no_mac.encode_to_vec()),
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
        let high = collection_index("regular_high").unwrap();
        let n = MAX_PATCHES_KEPT + 10;
        for i in 0..n {
            let until = Some(NOW + i as i64);
            a.phone_patch(
                high,
                &PhoneAction::Mute {
                    chat: "15550000001@s.whatsapp.net".into(),
                    until_ms: until,
                }
                .mutations()
                .1,
                NOW,
            );
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
        assert_eq!(snap.version.unwrap().version, Some(last));
        assert_eq!(snap.records.len(), 2, "the salt and one mute");
        let view = a.view("regular_high").unwrap();
        assert_eq!(view.records.len(), 2);
        assert_eq!(a.nct_salt(), Some(&[9u8; 32][..]));
    }

    #[test]
    fn corruption_breaks_the_served_copy_and_the_salt_follows_set_and_remove() {
        let cdn = cdn();
        let mut a = seeded();
        let high = collection_index("regular_high").unwrap();
        a.phone_patch(
            high,
            &PhoneAction::NctSalt(Some(vec![1; 16])).mutations().1,
            NOW,
        );
        assert_eq!(a.nct_salt(), Some(&[1u8; 16][..]));
        let keys = MutationKeys::expand(&a.keys()[0].data[..]);
        let hash = a.colls[high].hash.unwrap();
        let good = crypto::snapshot_mac(&keys, &hash, 2, "regular_high");
        assert!(a.corrupt("regular_high", Corruption::Patch));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "1", &cdn);
        let c = only(&ans);
        let p = wa::SyncdPatch::decode(
            &c.child("patches").unwrap().child_nodes()[0]
                .content_bytes()
                .unwrap()[..],
        )
        .unwrap();
        assert_ne!(p.snapshot_mac.as_deref(), Some(&good[..]));
        // The snapshot is still good, until it is corrupted too.
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "2", &cdn);
        assert_eq!(download(&cdn, &only(&ans)).mac.as_deref(), Some(&good[..]));
        assert!(a.corrupt("regular_high", Corruption::Snapshot));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", None, true)]), "3", &cdn);
        assert_ne!(download(&cdn, &only(&ans)).mac.as_deref(), Some(&good[..]));
        // The phone's recovery still says what is true.
        let rec = a.recovery("regular_high").unwrap();
        assert_eq!(rec.collection_lthash.as_deref(), Some(&hash[..]));
        assert_eq!(rec.mutation_records.len(), 1);
        // A dropped patch leaves a gap the server does not see.
        a.phone_patch(high, &PhoneAction::NctSalt(None).mutations().1, NOW);
        assert_eq!(a.nct_salt(), None);
        assert!(a.corrupt("regular_high", Corruption::DropPatch));
        let (ans, _) = a.answer(&iq(vec![fetch("regular_high", Some(1), false)]), "4", &cdn);
        assert_eq!(versions(&only(&ans)), [2]);
    }
}
