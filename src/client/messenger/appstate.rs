//! App-state sync (CLIENT-FEATURES §3), driven over the sans-IO core in `crate::appstate`: the
//! phone's key shares stored, the five collections fetched (snapshot, then patches, paged),
//! verified, applied and stored one patch per transaction, `server_sync` notifications
//! followed, missing keys asked for, a collection that fails verification synced again from a
//! snapshot and then asked of the phone (fatal recovery), and our own patches sent with their
//! 409 handled. One worker per client does all of it, one collection at a time, so our own
//! patches never race a sync of the same collection.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;

use super::{Messenger, SendError};
use crate::appstate::{
    Action, AppStateError, Applied, Collection, CollectionState, KeyLookup, LtHash, MutationKeys,
    PendingMutation, decode_patch, decode_recovery, decode_snapshot, encode_patch,
};
use crate::binary::{Jid, Node, Server};
use crate::client::account::{ChatChange, ContactChange};
use crate::client::appstate_store::{
    AppStateCommit, AppStateKey, AppStateRecord, CollectionVersion,
};
use crate::client::events::Event;
use crate::client::link::IQ_TIMEOUT;
use crate::client::store::CredsStore;
use crate::media::MediaType;
use crate::proto::wa;
use crate::stanza::appstate as st;

/// Rounds of `has_more_patches` paging per sync at most (whatsapp-rust and WA Web stop at 500).
const MAX_PAGES: u32 = 500;
/// Keys read from one key share at most (a phone shares one or a few).
const MAX_SHARED_KEYS: usize = 64;
/// A key is asked of the phone at most this often (whatsmeow asks once per 24 h per key).
const KEY_ASK_EVERY: Duration = Duration::from_secs(24 * 3600);
/// A collection's fatal recovery is asked of the phone at most this often.
const RECOVERY_ASK_EVERY: Duration = Duration::from_secs(3600);
/// Largest snapshot or external-mutations blob downloaded (plaintext).
const MAX_BLOB: u64 = 64 << 20;
/// Largest recovery copy accepted after gunzip.
const MAX_RECOVERY: u64 = 64 << 20;
/// Longest wait before a collection that failed for a passing reason is tried again.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);
/// How long the idle worker waits before checking its client still exists.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// Times one of our own patches is sent again after a 409 (whatsmeow retries once).
const MAX_CONFLICT_RETRIES: u32 = 2;

/// What the app-state worker does next, and what it remembers between runs.
#[derive(Default)]
pub(super) struct AppSync {
    /// Collections to sync on the worker's next round.
    dirty: Mutex<BTreeSet<Collection>>,
    /// Wakes the worker.
    wake: tokio::sync::Notify,
    /// When each missing key was last asked of the phone.
    asked_keys: Mutex<HashMap<Vec<u8>, Instant>>,
    /// Collections waiting for a key (synced again when a share arrives).
    parked: Mutex<BTreeSet<Collection>>,
    /// When each collection's recovery was last asked of the phone.
    recovery_asked: Mutex<HashMap<Collection, Instant>>,
    /// Serialises syncs and our own patches (a patch is built on the stored state).
    busy: tokio::sync::Mutex<()>,
    /// Collections whose last sync failed for a passing reason: when to try again, and how
    /// many times it failed in a row.
    retry: Mutex<HashMap<Collection, (Instant, u32)>>,
    /// The phone's recovery copies, applied by the worker (never in the receive path, which
    /// holds the phone's session lock that our own peer messages need).
    recoveries: Mutex<std::collections::VecDeque<RecoveryCopy>>,
}

/// A fatal-recovery answer from the phone, as received.
type RecoveryCopy = wa::peer_data_operation_request_response_message::peer_data_operation_result::SyncDSnapshotFatalRecoveryResponse;

/// Recovery copies waiting for the worker at most (the phone sends one per request).
const MAX_QUEUED_RECOVERIES: usize = 5;
/// Key ids asked of the phone in one request at most, and the longest id asked for.
const MAX_KEYS_ASKED: usize = 16;
const MAX_KEY_ID: usize = 64;
/// Key asks remembered at most (the map starts over past it).
const MAX_KEY_ASKS_KEPT: usize = 1024;
/// 409s in a row a fetch accepts before it counts as a passing failure.
const MAX_FETCH_CONFLICTS: u32 = 3;

/// How one collection's sync ended.
#[derive(Debug)]
enum SyncEnd {
    /// Up to date with the server.
    Done,
    /// A key is missing; asked of the phone.
    WaitingForKey,
    /// The server said the collection failed (code).
    Server(u16),
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
enum SyncFailure {
    /// Verification or decoding: our state and the server's disagree, or the input is bad.
    #[error("{0}")]
    Verify(AppStateError),
    /// Anything else (network, store, CDN): tried again on the next round.
    #[error("{0}")]
    Transient(String),
}

impl From<SendError> for SyncFailure {
    fn from(e: SendError) -> Self {
        SyncFailure::Transient(e.to_string())
    }
}

impl From<crate::client::store::CredsStoreError> for SyncFailure {
    fn from(e: crate::client::store::CredsStoreError) -> Self {
        SyncFailure::Transient(e.to_string())
    }
}

/// Keys looked up from those loaded for one sync step.
struct Keys(HashMap<Vec<u8>, AppStateKey>);

impl KeyLookup for Keys {
    fn keys(&self, key_id: &[u8]) -> Option<MutationKeys> {
        self.0
            .get(key_id)
            .map(|k| MutationKeys::expand(&k.data[..]))
    }
}

/// What one of our own actions asks (the REST chat actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAction {
    /// Archive (true) or unarchive.
    Archive(bool),
    /// Pin (true) or unpin.
    Pin(bool),
    /// Mute until (ms; -1 forever), or unmute (None).
    Mute(Option<i64>),
    /// Mark read (true) or unread.
    Read(bool),
}

impl<S: CredsStore> Messenger<S> {
    /// A key share from our own phone (`APP_STATE_SYNC_KEY_SHARE`): stores the keys, then
    /// syncs what waited for them, or everything never synced (whatsmeow
    /// `handleAppStateSyncKeyShare`). False when the keys could not be stored (the message
    /// is then left unreceipted, and redelivered).
    pub(super) async fn on_key_share(&self, share: &wa::AppStateSyncKeyShare) -> bool {
        let keys: Vec<AppStateKey> = share
            .keys
            .iter()
            .take(MAX_SHARED_KEYS)
            .filter_map(|k| {
                let id = k.key_id.as_ref()?.key_id.clone()?;
                let data = k.key_data.as_ref()?;
                let bytes: [u8; 32] = data.key_data.as_deref()?.try_into().ok()?;
                (!id.is_empty() && id.len() <= 64).then(|| AppStateKey {
                    id,
                    data: zeroize::Zeroizing::new(bytes),
                    created: data.timestamp.unwrap_or(0),
                })
            })
            .collect();
        if keys.is_empty() {
            return true;
        }
        match self.store.add_app_state_keys(&keys).await {
            Ok(new) => {
                tracing::info!(keys = keys.len(), new, "app-state keys shared by the phone");
                let mut wake: BTreeSet<Collection> = self
                    .appsync
                    .parked
                    .lock()
                    .map(|mut p| std::mem::take(&mut *p))
                    .unwrap_or_default();
                for c in Collection::ALL {
                    if matches!(self.store.app_state_version(c.name()).await, Ok(None)) {
                        wake.insert(c);
                    }
                }
                self.mark_dirty(wake);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot store app-state keys; they will be redelivered");
                false
            }
        }
    }

    /// `<notification type="server_sync">`: fetch each collection named (already acked).
    pub(super) fn on_server_sync(&self, node: &Node) {
        let named: BTreeSet<Collection> = st::parse_server_sync(node)
            .iter()
            .filter_map(|(name, _)| Collection::from_name(name))
            .collect();
        self.mark_dirty(named);
    }

    /// Queues collections for the worker.
    pub(super) fn mark_dirty(&self, cs: impl IntoIterator<Item = Collection>) {
        let mut any = false;
        if let Ok(mut d) = self.appsync.dirty.lock() {
            for c in cs {
                any |= d.insert(c);
            }
        }
        if any {
            self.appsync.wake.notify_one();
        }
    }

    /// After login: sync every collection once we hold a key (a fresh link waits for the
    /// phone's key share instead).
    pub(in crate::client) async fn app_state_after_login(&self) {
        if matches!(self.store.latest_app_state_key().await, Ok(Some(_))) {
            self.mark_dirty(Collection::ALL);
        }
    }

    /// The worker: syncs dirty collections until the messenger is dropped. It holds the
    /// messenger at most a minute while idle, so a dropped client's worker ends.
    pub(super) async fn app_state_loop(me: std::sync::Weak<Messenger<S>>) {
        loop {
            let Some(m) = me.upgrade() else { return };
            let now = Instant::now();
            let mut next_retry = IDLE_RECHECK;
            if let Ok(r) = m.appsync.retry.lock() {
                let due: Vec<Collection> = r
                    .iter()
                    .filter(|(_, (at, _))| *at <= now)
                    .map(|(c, _)| *c)
                    .collect();
                for (at, _) in r.values().filter(|(at, _)| *at > now) {
                    next_retry = next_retry.min(at.duration_since(now));
                }
                drop(r);
                m.mark_dirty(due);
            }
            let copies: Vec<RecoveryCopy> = m
                .appsync
                .recoveries
                .lock()
                .map(|mut q| q.drain(..).collect())
                .unwrap_or_default();
            for r in copies {
                m.apply_recovery(r).await;
            }
            let todo: BTreeSet<Collection> = m
                .appsync
                .dirty
                .lock()
                .map(|mut d| std::mem::take(&mut *d))
                .unwrap_or_default();
            if todo.is_empty()
                && m.appsync
                    .recoveries
                    .lock()
                    .map(|q| q.is_empty())
                    .unwrap_or(true)
            {
                // A wake sent before this wait is kept by the Notify (one permit).
                let _ = tokio::time::timeout(next_retry, m.appsync.wake.notified()).await;
            } else {
                for c in todo {
                    m.sync_one(c).await;
                }
            }
        }
    }

    /// Syncs one collection, recovering from a verification failure: the collection is
    /// synced again from a snapshot (which replaces our state only once it verifies, in one
    /// transaction), and if that fails too, the phone is asked for its copy. Anything short of
    /// done is tried again later.
    async fn sync_one(&self, c: Collection) {
        let _busy = self.appsync.busy.lock().await;
        let mut outcome = self.sync_collection(c, false).await;
        if let Err(SyncFailure::Verify(e)) = &outcome {
            tracing::warn!(collection = %c, error = %e, "app state does not verify; syncing it again from a snapshot");
            self.publish(Event::AppStateFailed {
                collection: c.name().to_owned(),
                reason: e.to_string(),
                recovery: "full_resync".into(),
            });
            outcome = self.sync_collection(c, true).await;
            if let Err(SyncFailure::Verify(e)) = &outcome {
                tracing::warn!(collection = %c, error = %e, "snapshot does not verify either; asking the phone");
                let asked = self.ask_recovery(c).await;
                self.publish(Event::AppStateFailed {
                    collection: c.name().to_owned(),
                    reason: e.to_string(),
                    recovery: if asked {
                        "recovery_requested".into()
                    } else {
                        "recovery_pending".into()
                    },
                });
            }
        }
        let done = matches!(outcome, Ok(SyncEnd::Done));
        if let Ok(mut r) = self.appsync.retry.lock() {
            if done || matches!(outcome, Ok(SyncEnd::WaitingForKey)) {
                // A key share wakes a parked collection.
                r.remove(&c);
            } else {
                // Tried again after 1 s, 2 s, 4 s… up to 5 min (and at the next login or
                // server_sync anyway); a verification failure waits for the phone's copy too.
                let n = r.get(&c).map(|(_, n)| *n).unwrap_or(0);
                let wait = Duration::from_secs(1u64 << n.min(8)).min(MAX_RETRY_WAIT);
                r.insert(c, (Instant::now() + wait, n.saturating_add(1)));
            }
        }
        match outcome {
            Ok(SyncEnd::Done) | Err(SyncFailure::Verify(_)) => {}
            Ok(SyncEnd::WaitingForKey) => {
                if let Ok(mut p) = self.appsync.parked.lock() {
                    p.insert(c);
                }
            }
            Ok(SyncEnd::Server(code)) => {
                self.publish(Event::AppStateFailed {
                    collection: c.name().to_owned(),
                    reason: format!("the server answered error {code}"),
                    recovery: "retry".into(),
                });
            }
            Err(SyncFailure::Transient(e)) => {
                tracing::info!(collection = %c, error = %e, "app-state sync failed; retried later");
                // Offline is not news: the next login syncs everything.
                if self.sender().is_some() {
                    self.publish(Event::AppStateFailed {
                        collection: c.name().to_owned(),
                        reason: e,
                        recovery: "retry".into(),
                    });
                }
            }
        }
    }

    /// Fetches and applies a collection until the server has no more patches; with
    /// `snapshot`, starts from a snapshot whatever we hold (a resync).
    async fn sync_collection(&self, c: Collection, snapshot: bool) -> Result<SyncEnd, SyncFailure> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let mut want_snapshot = snapshot;
        let mut conflicts = 0;
        for _ in 0..MAX_PAGES {
            let stored = self.store.app_state_version(c.name()).await?;
            let asked_snapshot = want_snapshot || stored.is_none();
            let ask = st::CollectionAsk {
                name: c.name().to_owned(),
                version: stored.as_ref().map(|s| s.version).unwrap_or(0),
                snapshot: asked_snapshot,
            };
            let answer = self
                .link
                .iq
                .query(&sender, st::sync_request(&[ask]), IQ_TIMEOUT)
                .await
                .map_err(SendError::from)?;
            let Some(a) = st::parse_sync_response(&answer)
                .into_iter()
                .find(|a| a.name == c.name())
            else {
                return Err(SyncFailure::Transient(
                    "no answer for the collection".into(),
                ));
            };
            if let Some(e) = &a.error {
                match e.code {
                    // A conflict: the patches it lacks are asked for again, a few times.
                    409 if conflicts < MAX_FETCH_CONFLICTS => {
                        conflicts += 1;
                        continue;
                    }
                    // The server no longer holds the patches after our version (or finds our
                    // ask bad): start over from a snapshot, once (CLIENT-FEATURES §3.2).
                    400 | 404 if !asked_snapshot => {
                        want_snapshot = true;
                        continue;
                    }
                    400 | 404 => return Ok(SyncEnd::Server(e.code)),
                    code => {
                        return Err(SyncFailure::Transient(format!(
                            "the server answered {code}"
                        )));
                    }
                }
            }
            conflicts = 0;
            let mut state = if asked_snapshot { None } else { stored.clone() };
            if let Some(snap) = &a.snapshot {
                if !asked_snapshot {
                    // whatsmeow refuses a snapshot it did not ask for: an old one replayed
                    // would roll the collection back.
                    return Err(SyncFailure::Verify(AppStateError::Malformed(
                        "a snapshot nobody asked for",
                    )));
                }
                match self.apply_snapshot(c, snap, stored.as_ref()).await? {
                    Some(v) => state = Some(v),
                    None => return Ok(SyncEnd::WaitingForKey),
                }
                want_snapshot = false;
            } else if asked_snapshot && stored.is_some() && a.version == 0 {
                // Asked to start over, the server holds nothing: our records go.
                want_snapshot = false;
            }
            if state.is_none() && a.snapshot.is_none() && a.patches.is_empty() && a.version == 0 {
                // An empty collection (nothing ever written): synced at version 0, so its
                // first patch applies on the zero hash.
                let empty = Applied {
                    collection: c,
                    version: 0,
                    hash: LtHash::default(),
                    replaces: true,
                    added: Vec::new(),
                    removed: Vec::new(),
                    mutations: Vec::new(),
                };
                state = Some(self.commit_applied(empty).await?);
            }
            if state.is_none() && !a.patches.is_empty() && asked_snapshot && stored.is_some() {
                // A resync answered with patches but no snapshot: they cannot be applied on a
                // state we are replacing.
                return Err(SyncFailure::Verify(AppStateError::Malformed(
                    "patches without the snapshot asked for",
                )));
            }
            for p in &a.patches {
                let Some(v) = self.apply_patch(c, state.as_ref(), p).await? else {
                    return Ok(SyncEnd::WaitingForKey);
                };
                state = Some(v);
            }
            if !a.has_more {
                if let Some(s) = &state {
                    self.publish(Event::AppStateSynced {
                        collection: c.name().to_owned(),
                        version: s.version,
                    });
                }
                return Ok(SyncEnd::Done);
            }
        }
        Err(SyncFailure::Transient("too many pages".into()))
    }

    /// Loads the keys `ids` names; asks the phone for those missing (None then).
    async fn keys_for(&self, ids: &[Vec<u8>]) -> Result<Option<Keys>, SyncFailure> {
        let mut have = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            if have.contains_key(id) {
                continue;
            }
            match self.store.app_state_key(id).await? {
                Some(k) => {
                    have.insert(id.clone(), k);
                }
                None => missing.push(id.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(Some(Keys(have)));
        }
        self.ask_keys(&missing).await;
        Ok(None)
    }

    /// Asks the phone for keys (each at most once per [`KEY_ASK_EVERY`]).
    async fn ask_keys(&self, ids: &[Vec<u8>]) {
        let now = Instant::now();
        let due: Vec<Vec<u8>> = match self.appsync.asked_keys.lock() {
            Ok(mut asked) => {
                if asked.len() > MAX_KEY_ASKS_KEPT {
                    asked.clear();
                }
                let due: Vec<Vec<u8>> = ids
                    .iter()
                    .filter(|id| !id.is_empty() && id.len() <= MAX_KEY_ID)
                    .take(MAX_KEYS_ASKED)
                    .filter(|id| {
                        asked
                            .get(*id)
                            .is_none_or(|t| now.duration_since(*t) >= KEY_ASK_EVERY)
                    })
                    .cloned()
                    .collect();
                for id in &due {
                    asked.insert(id.clone(), now);
                }
                due
            }
            Err(_) => return,
        };
        if due.is_empty() {
            return;
        }
        let message = wa::Message {
            protocol_message: Some(Box::new(wa::ProtocolMessage {
                r#type: Some(wa::protocol_message::Type::AppStateSyncKeyRequest as i32),
                app_state_sync_key_request: Some(wa::AppStateSyncKeyRequest {
                    key_ids: due
                        .iter()
                        .map(|id| wa::AppStateSyncKeyId {
                            key_id: Some(id.clone()),
                        })
                        .collect(),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        match self.send_peer(&message).await {
            Ok(_) => tracing::info!(keys = due.len(), "asked the phone for app-state keys"),
            Err(e) => tracing::warn!(error = %e, "cannot ask the phone for app-state keys"),
        }
        self.publish(Event::AppStateKeysRequested { count: due.len() });
    }

    /// Downloads, verifies and stores a snapshot; None when a key is missing.
    async fn apply_snapshot(
        &self,
        c: Collection,
        reference: &[u8],
        ours: Option<&CollectionVersion>,
    ) -> Result<Option<CollectionVersion>, SyncFailure> {
        let r = wa::ExternalBlobReference::decode(reference)
            .map_err(|_| SyncFailure::Verify(AppStateError::Malformed("snapshot reference")))?;
        let blob = self.download_blob(&r).await?;
        let snap = wa::SyncdSnapshot::decode(blob.as_slice())
            .map_err(|_| SyncFailure::Verify(AppStateError::Malformed("SyncdSnapshot")))?;
        let ids = crate::appstate::missing_keys(Some(&snap), [], &Keys(HashMap::new()));
        let Some(keys) = self.keys_for(&ids).await? else {
            return Ok(None);
        };
        let applied = decode_snapshot(c, &snap, &keys).map_err(SyncFailure::Verify)?;
        if ours.is_some_and(|o| applied.version < o.version) {
            // An older snapshot, however valid, would roll the collection back.
            return Err(SyncFailure::Verify(AppStateError::Malformed(
                "a snapshot older than our state",
            )));
        }
        self.commit_applied(applied).await.map(Some)
    }

    /// Verifies and stores one patch on top of `state`; None when a key is missing.
    async fn apply_patch(
        &self,
        c: Collection,
        state: Option<&CollectionVersion>,
        bytes: &[u8],
    ) -> Result<Option<CollectionVersion>, SyncFailure> {
        let mut patch = wa::SyncdPatch::decode(bytes)
            .map_err(|_| SyncFailure::Verify(AppStateError::Malformed("SyncdPatch")))?;
        let version = state.map(|s| s.version).unwrap_or(0);
        if patch.version.as_ref().and_then(|v| v.version).is_none() {
            // Baileys fills a missing version with the collection's next one.
            patch.version = Some(wa::SyncdVersion {
                version: Some(version + 1),
            });
        }
        if patch.version.as_ref().and_then(|v| v.version) <= Some(version) && state.is_some() {
            // Already applied (a page overlapping what we stored): nothing to do.
            return Ok(state.cloned());
        }
        if let Some(ext) = patch.external_mutations.clone() {
            let blob = self.download_blob(&ext).await?;
            let muts = wa::SyncdMutations::decode(blob.as_slice())
                .map_err(|_| SyncFailure::Verify(AppStateError::Malformed("SyncdMutations")))?;
            if muts.mutations.is_empty() {
                return Err(SyncFailure::Verify(AppStateError::Malformed(
                    "empty external mutations",
                )));
            }
            patch.mutations = muts.mutations;
        }
        let ids = crate::appstate::missing_keys(None, [&patch], &Keys(HashMap::new()));
        let Some(keys) = self.keys_for(&ids).await? else {
            return Ok(None);
        };
        // Only the records this patch touches are read: a collection's whole MAC table is
        // never loaded.
        let touched: Vec<[u8; 32]> = patch
            .mutations
            .iter()
            .filter_map(|m| m.record.as_ref()?.index.as_ref()?.blob.as_deref())
            .filter_map(|b| b.try_into().ok())
            .collect();
        let macs = self.store.value_macs(c.name(), &touched).await?;
        let current = CollectionState {
            version,
            hash: state.map(|s| LtHash(s.hash)).unwrap_or_default(),
            macs,
        };
        let applied = decode_patch(c, &current, &patch, &keys).map_err(SyncFailure::Verify)?;
        self.commit_applied(applied).await.map(Some)
    }

    /// Stores what a verified input did, with the chat and contact changes it makes, in one
    /// unit; then tells subscribers.
    async fn commit_applied(&self, a: Applied) -> Result<CollectionVersion, SyncFailure> {
        let state = CollectionVersion {
            version: a.version,
            hash: a.hash.0,
        };
        let mut commit = AppStateCommit {
            collection: a.collection.name().to_owned(),
            state: state.clone(),
            replace: a.replaces,
            removed: a.removed.clone(),
            added: Vec::with_capacity(a.mutations.len()),
            chats: Vec::new(),
            contacts: Vec::new(),
            nct_salt: None,
        };
        let mut push_name = None;
        let mut actions = Vec::new();
        let mut pairs = Vec::new();
        for m in &a.mutations {
            if m.operation == crate::appstate::Operation::Set {
                commit.added.push(AppStateRecord {
                    index_mac: m.index_mac,
                    value_mac: m.value_mac,
                    index: serde_json::to_string(&m.index).unwrap_or_default(),
                    data: m.raw.clone(),
                });
            }
            let action = Action::from_mutation(m);
            // When the action happened (ms, its device's clock), else now.
            let at = m
                .data
                .value
                .as_ref()
                .and_then(|v| v.timestamp)
                .and_then(|t| u64::try_from(t / 1000).ok())
                .filter(|t| *t > 0)
                .unwrap_or_else(|| self.clock.now_unix());
            if action == Action::Removed {
                removed_effect(&m.index, &mut commit, &mut actions);
            }
            self.effects(&action, at, &mut commit, &mut pairs, &mut push_name);
            if !matches!(action, Action::Other | Action::Removed) {
                actions.push(action);
            }
        }
        // PN ↔ LID pairs first: they move what was stored under the number, and the store
        // keys the chat and contact changes by the canonical JID.
        self.learn_many(&pairs).await;
        let cleared = self.store.commit_app_state(&commit).await?;
        // A snapshot that no longer holds a chat's flag record cleared that flag in its
        // commit: told first (it applied first), as a REMOVE of the record is.
        let actions: Vec<Action> = cleared
            .iter()
            .filter_map(cleared_action)
            .chain(actions)
            .collect();
        if let Some(name) = push_name
            && self.account().and_then(|a| a.me.push_name) != Some(name.clone())
        {
            self.learn_push_name(name).await;
        }
        for e in action_events(a.collection, actions) {
            self.publish(e);
        }
        Ok(state)
    }

    /// What an action changes beyond its record.
    fn effects(
        &self,
        action: &Action,
        at: u64,
        commit: &mut AppStateCommit,
        pairs: &mut Vec<(String, String)>,
        push_name: &mut Option<String>,
    ) {
        let chat = |jid: &Jid| ChatChange {
            chat: jid.to_non_ad(),
            ..ChatChange::default()
        };
        match action {
            Action::Contact {
                jid,
                full_name,
                first_name,
                lid,
                pn,
                username,
            } => {
                // A PN index with a LID (or a LID index with a PN) is a mapping (Baileys
                // `processContactAction`).
                match (&jid.server, lid, pn) {
                    (Server::User, Some(l), _) if l.server == Server::Lid => {
                        pairs.push((jid.user.clone(), l.user.clone()))
                    }
                    (Server::Lid, _, Some(p)) if p.server == Server::User => {
                        pairs.push((p.user.clone(), jid.user.clone()))
                    }
                    _ => {}
                }
                commit.contacts.push(ContactChange {
                    jid: jid.to_non_ad(),
                    full_name: full_name.clone(),
                    first_name: first_name.clone(),
                    username: username.clone(),
                    ..ContactChange::default()
                });
            }
            // The address-book entry is gone: its names go with it (the push name, which the
            // contact gave itself, stays). Decision (the references differ): whatsmeow's
            // `appstate.go` skips a contact mutation that is not a SET and Baileys reads the
            // value whatever the operation, so both keep a deleted contact's names; a REMOVE is
            // the phone deleting the address-book entry, and showing its old name would be
            // wrong, so we clear them.
            Action::ContactRemoved { jid } => commit.contacts.push(ContactChange {
                jid: jid.to_non_ad(),
                forget_names: true,
                ..ContactChange::default()
            }),
            Action::LidContact {
                lid,
                full_name,
                first_name,
                username,
            } => commit.contacts.push(ContactChange {
                jid: lid.to_non_ad(),
                full_name: full_name.clone(),
                first_name: first_name.clone(),
                username: username.clone(),
                ..ContactChange::default()
            }),
            Action::PushName(name) => *push_name = Some(name.clone()),
            // A flag turned off changes a chat we have; it makes no empty row for one we never
            // had.
            Action::Mute { chat: c, until_ms } => commit.chats.push(ChatChange {
                muted_until: Some(*until_ms),
                only_if_stored: until_ms.is_none(),
                ..chat(c)
            }),
            Action::Archive { chat: c, archived } => commit.chats.push(ChatChange {
                archived: Some(*archived),
                only_if_stored: !archived,
                ..chat(c)
            }),
            Action::Pin { chat: c, pinned } => commit.chats.push(ChatChange {
                pinned: Some(pinned.then_some(at)),
                only_if_stored: !pinned,
                ..chat(c)
            }),
            Action::MarkRead { chat: c, read } => commit.chats.push(ChatChange {
                marked_unread: Some(!read),
                unread_count: read.then_some(0),
                read_ts: read.then_some(Some(at)),
                only_if_stored: *read,
                ..chat(c)
            }),
            Action::DeleteChat { chat: c } => commit.chats.push(ChatChange {
                deleted_at: Some(Some(at)),
                ..chat(c)
            }),
            Action::NctSalt(salt) => {
                commit.nct_salt = Some(salt.as_ref().map(|s| s.0.clone()));
            }
            Action::PnForLidChat { lid, pn } => pairs.push((pn.user.clone(), lid.user.clone())),
            _ => {}
        }
    }

    /// Downloads an app-state blob (`md-app-state`), verified whole, into memory (at most
    /// [`MAX_BLOB`] bytes).
    async fn download_blob(&self, r: &wa::ExternalBlobReference) -> Result<Vec<u8>, SyncFailure> {
        let bad = |what| SyncFailure::Verify(AppStateError::Malformed(what));
        let key: [u8; 32] = r
            .media_key
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or(bad("blob without media key"))?;
        let sha: [u8; 32] = r
            .file_sha256
            .as_deref()
            .and_then(|k| k.try_into().ok())
            .ok_or(bad("blob without file hash"))?;
        let path = r
            .direct_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .ok_or(bad("blob without path"))?;
        let cdn = self
            .cdn()
            .map_err(|e| SyncFailure::Transient(e.to_string()))?;
        let conn = self.media_conn(false).await?;
        let fetch = crate::client::media::Fetch {
            ty: MediaType::AppState,
            key,
            file_sha256: sha,
            file_enc_sha256: r.file_enc_sha256.as_deref().and_then(|k| k.try_into().ok()),
            path: &path,
            declared: r.file_size_bytes,
        };
        let mut sink = VecSink(Vec::new());
        crate::client::media::fetch_verified(&cdn, &conn.hosts, &fetch, MAX_BLOB, &mut sink)
            .await
            .map_err(|e| match e {
                crate::client::media::MediaFailure::Verify(_) => bad("blob does not verify"),
                e => SyncFailure::Transient(format!("download: {e}")),
            })?;
        Ok(sink.0)
    }

    /// Asks the phone for its plaintext copy of `c` (`COMPANION_SYNCD_SNAPSHOT_FATAL_RECOVERY`),
    /// at most once per [`RECOVERY_ASK_EVERY`]; true when asked now.
    async fn ask_recovery(&self, c: Collection) -> bool {
        let now = Instant::now();
        let due = self
            .appsync
            .recovery_asked
            .lock()
            .map(|mut m| {
                let due = m
                    .get(&c)
                    .is_none_or(|t| now.duration_since(*t) >= RECOVERY_ASK_EVERY);
                if due {
                    m.insert(c, now);
                }
                due
            })
            .unwrap_or(false);
        if !due {
            return false;
        }
        let message = wa::Message {
            protocol_message: Some(Box::new(wa::ProtocolMessage {
                r#type: Some(
                    wa::protocol_message::Type::PeerDataOperationRequestMessage as i32,
                ),
                peer_data_operation_request_message: Some(wa::PeerDataOperationRequestMessage {
                    peer_data_operation_request_type: Some(
                        wa::PeerDataOperationRequestType::CompanionSyncdSnapshotFatalRecovery
                            as i32,
                    ),
                    syncd_collection_fatal_recovery_request: Some(
                        wa::peer_data_operation_request_message::SyncDCollectionFatalRecoveryRequest {
                            collection_name: Some(c.name().to_owned()),
                            timestamp: i64::try_from(self.clock.now_unix()).ok(),
                        },
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        match self.send_peer(&message).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the phone for a collection's copy");
                false
            }
        }
    }

    /// The phone's answer to a fatal-recovery request (`syncdSnapshotFatalRecoveryResponse`,
    /// from its device 0): queued for the worker, which applies it unless we already hold
    /// that version or newer (whatsmeow `handleAppStateRecovery`).
    pub(super) fn on_recovery(&self, r: &RecoveryCopy) {
        if let Ok(mut q) = self.appsync.recoveries.lock() {
            if q.len() >= MAX_QUEUED_RECOVERIES {
                q.pop_front();
            }
            q.push_back(r.clone());
        }
        self.appsync.wake.notify_one();
    }

    /// Applies a recovery copy (the worker's).
    async fn apply_recovery(&self, r: RecoveryCopy) {
        let Some(bytes) = r.collection_snapshot.as_deref() else {
            return;
        };
        let plain = if r.is_compressed.unwrap_or(false) {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(bytes)
                .take(MAX_RECOVERY + 1)
                .read_to_end(&mut out);
            if read.is_err() || out.len() as u64 > MAX_RECOVERY {
                tracing::warn!("a collection copy from the phone does not inflate");
                return;
            }
            out
        } else {
            bytes.to_vec()
        };
        let Ok(rec) = wa::SyncdSnapshotRecovery::decode(plain.as_slice()) else {
            tracing::warn!("a collection copy from the phone is not a SyncdSnapshotRecovery");
            return;
        };
        let Some(c) = rec
            .collection_name
            .as_deref()
            .and_then(Collection::from_name)
        else {
            return;
        };
        let _busy = self.appsync.busy.lock().await;
        let version = rec.version.as_ref().and_then(|v| v.version).unwrap_or(0);
        if let Ok(Some(have)) = self.store.app_state_version(c.name()).await
            && have.version >= version
        {
            return;
        }
        let ids: Vec<Vec<u8>> = rec
            .mutation_records
            .iter()
            .filter_map(|r| r.key_id.clone())
            .collect();
        let keys = match self.keys_for(&ids).await {
            Ok(Some(k)) => k,
            _ => return,
        };
        match decode_recovery(c, &rec, &keys) {
            Ok(applied) => match self.commit_applied(applied).await {
                Ok(v) => {
                    tracing::info!(collection = %c, version = v.version, "collection recovered from the phone's copy");
                    self.publish(Event::AppStateSynced {
                        collection: c.name().to_owned(),
                        version: v.version,
                    });
                    // Patches after the copy.
                    self.mark_dirty([c]);
                }
                Err(e) => tracing::warn!(error = %e, "cannot store a recovered collection"),
            },
            Err(e) => {
                tracing::warn!(collection = %c, error = %e, "the phone's copy does not verify");
                self.publish(Event::AppStateFailed {
                    collection: c.name().to_owned(),
                    reason: e.to_string(),
                    recovery: "gave_up".into(),
                });
            }
        }
    }

    /// Sends one of our own chat actions as an app-state patch; a 409 (someone else wrote
    /// first) gets the newer patches applied and the patch built again on them (whatsmeow
    /// `sendAppState` retries once; we allow [`MAX_CONFLICT_RETRIES`]).
    pub(in crate::client) async fn send_chat_action(
        &self,
        chat: &Jid,
        action: ChatAction,
    ) -> Result<(), SendError> {
        let chat = match self.account() {
            // Indexes name a 1:1 chat by its phone number when we know it (as phones do);
            // what we store is keyed by the LID.
            Some(_) if chat.server == Server::Lid => {
                match self.store.pn_for(&chat.user).await.ok().flatten() {
                    Some(pn) => Jid::new(pn, Server::User),
                    None => chat.to_non_ad(),
                }
            }
            Some(_) => chat.to_non_ad(),
            None => return Err(SendError::NotConnected),
        };
        let now_ms = i64::try_from(self.clock.now_unix()).unwrap_or(0) * 1000;
        let range = self.message_range(&chat).await;
        let (c, muts): (Collection, Vec<PendingMutation>) = match action {
            ChatAction::Archive(a) => crate::appstate::archive(&chat, a, range),
            ChatAction::Pin(p) => crate::appstate::pin(&chat, p),
            ChatAction::Mute(until) => crate::appstate::mute(&chat, until),
            ChatAction::Read(r) => crate::appstate::mark_read(&chat, r, range),
        };
        let _busy = self.appsync.busy.lock().await;
        let key = self.store.latest_app_state_key().await?.ok_or_else(|| {
            SendError::AppStateNotReady("no app-state key shared by the phone yet".into())
        })?;
        let keys = MutationKeys::expand(&key.data[..]);
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        for attempt in 0..=MAX_CONFLICT_RETRIES {
            // Our patch is built on the stored state: bring it up to date first.
            match self.sync_collection(c, false).await {
                Ok(SyncEnd::Done) => {}
                Ok(SyncEnd::WaitingForKey) => {
                    return Err(SendError::AppStateNotReady(
                        "waiting for an app-state key from the phone".into(),
                    ));
                }
                Ok(SyncEnd::Server(code)) => {
                    return Err(SendError::AppStateRefused(format!(
                        "the app-state server answered {code}"
                    )));
                }
                Err(SyncFailure::Verify(e)) => {
                    // The worker resyncs it; our change waits for that.
                    self.mark_dirty([c]);
                    return Err(SendError::AppStateNotReady(format!(
                        "the collection is being synced again ({e})"
                    )));
                }
                Err(SyncFailure::Transient(e)) => return Err(SendError::Unexpected(e)),
            }
            let stored = self
                .store
                .app_state_version(c.name())
                .await?
                .ok_or_else(|| {
                    SendError::AppStateNotReady("the collection has not been synced yet".into())
                })?;
            let touched: Vec<[u8; 32]> = muts
                .iter()
                .map(|m| {
                    keys.index_mac(
                        serde_json::to_string(&m.index)
                            .unwrap_or_default()
                            .as_bytes(),
                    )
                })
                .collect();
            let state = CollectionState {
                version: stored.version,
                hash: LtHash(stored.hash),
                macs: self.store.value_macs(c.name(), &touched).await?,
            };
            let (patch, applied) =
                encode_patch(c, &state, &key.id, &keys, &muts, now_ms, &mut || {
                    rand::random::<[u8; 16]>()
                });
            let answer = self
                .link
                .iq
                .query(
                    &sender,
                    st::patch_upload(c.name(), stored.version, patch.encode_to_vec()),
                    IQ_TIMEOUT,
                )
                .await?;
            let a = st::parse_sync_response(&answer)
                .into_iter()
                .find(|a| a.name == c.name())
                .ok_or_else(|| SendError::Unexpected("no answer for the collection".into()))?;
            match &a.error {
                None => {
                    self.commit_applied(applied)
                        .await
                        .map_err(|e| SendError::Unexpected(e.to_string()))?;
                    return Ok(());
                }
                Some(e) if e.code == 409 => {
                    tracing::info!(collection = %c, attempt, "app-state patch conflicted; rebuilding it on the newer state");
                    continue;
                }
                Some(e) => {
                    return Err(SendError::AppStateRefused(format!(
                        "the app-state server refused the patch: {} {}",
                        e.code, e.text
                    )));
                }
            }
        }
        Err(SendError::AppStateRefused(
            "the app-state patch kept conflicting".into(),
        ))
    }
}

impl<S: CredsStore> Messenger<S> {
    /// The chat's newest message as an action's message range (whatsmeow `newMessageRange`:
    /// its time in seconds and its key); an empty chat gives time 0 and no key.
    async fn message_range(&self, chat: &Jid) -> wa::SyncActionMessageRange {
        let stored = self.canonical(chat).await.to_non_ad();
        let last = self
            .store
            .messages(Some(&stored), 1, 0)
            .await
            .ok()
            .and_then(|m| m.into_iter().next());
        match last {
            Some(m) => crate::appstate::encode::message_range(
                i64::try_from(m.timestamp).unwrap_or(0),
                Some(wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(m.from_me),
                    id: Some(m.id.clone()),
                    participant: (chat.server == Server::Group && !m.from_me)
                        .then(|| m.sender.to_string()),
                }),
            ),
            None => crate::appstate::encode::message_range(0, None),
        }
    }
}

/// Actions one [`Event::AppStateActions`] carries at most: a snapshot of 100,000 contacts
/// becomes 100 events in order, so one event (and a subscriber's copy of it) stays bounded.
pub const MAX_ACTIONS_PER_EVENT: usize = 1000;

/// The events that tell `actions` (none when empty), [`MAX_ACTIONS_PER_EVENT`] at most each.
fn action_events(c: Collection, mut actions: Vec<Action>) -> Vec<Event> {
    let mut out = Vec::with_capacity(actions.len().div_ceil(MAX_ACTIONS_PER_EVENT));
    while !actions.is_empty() {
        let rest = actions.split_off(actions.len().min(MAX_ACTIONS_PER_EVENT));
        out.push(Event::AppStateActions {
            collection: c.name().to_owned(),
            actions,
        });
        actions = rest;
    }
    out
}

/// A REMOVE of a chat's record undoes what its SET did (the record is gone: the chat is no
/// longer muted, archived, pinned or marked unread), and is told as that undoing.
fn removed_effect(index: &[String], commit: &mut AppStateCommit, actions: &mut Vec<Action>) {
    if let Some(change) = crate::client::appstate_store::flag_cleared(index) {
        actions.extend(cleared_action(&change));
        commit.chats.push(change);
    }
}

/// The action a cleared chat flag ([`crate::client::appstate_store::flag_cleared`]) is told
/// as: unarchived, unpinned, unmuted, or no longer marked unread (`MarkRead { read: true }`,
/// the action that clears that mark).
fn cleared_action(c: &ChatChange) -> Option<Action> {
    let chat = c.chat.clone();
    if c.archived == Some(false) {
        Some(Action::Archive {
            chat,
            archived: false,
        })
    } else if c.pinned == Some(None) {
        Some(Action::Pin {
            chat,
            pinned: false,
        })
    } else if c.muted_until == Some(None) {
        Some(Action::Mute {
            chat,
            until_ms: None,
        })
    } else if c.marked_unread == Some(false) {
        Some(Action::MarkRead { chat, read: true })
    } else {
        None
    }
}

/// Collects a download in memory (the caller bounds it).
struct VecSink(Vec<u8>);

impl crate::client::media::MediaSink for VecSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> crate::client::media::MediaFuture<'a, ()> {
        self.0.extend_from_slice(chunk);
        Box::pin(async { Ok(()) })
    }
}

/// Starts the app-state worker of `m` (ends when the messenger is dropped).
pub(super) fn start_worker<S: CredsStore>(m: &Arc<Messenger<S>>, span: &tracing::Span) {
    use tracing::Instrument as _;
    tokio::spawn(Messenger::app_state_loop(Arc::downgrade(m)).instrument(span.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_actions_are_told_in_bounded_events_in_order() {
        let actions: Vec<Action> = (0..2_500u32)
            .map(|i| Action::PushName(i.to_string()))
            .collect();
        let events = action_events(Collection::CriticalBlock, actions.clone());
        let mut told = Vec::new();
        for e in &events {
            let Event::AppStateActions {
                collection,
                actions,
            } = e
            else {
                panic!("not an actions event: {e:?}");
            };
            assert_eq!(collection, "critical_block");
            assert!(!actions.is_empty() && actions.len() <= MAX_ACTIONS_PER_EVENT);
            told.extend(actions.iter().cloned());
        }
        assert_eq!(events.len(), 3);
        assert_eq!(told, actions);
        assert!(action_events(Collection::CriticalBlock, Vec::new()).is_empty());
    }

    #[test]
    fn a_removed_flag_record_is_told_as_its_undoing_and_changes_only_a_stored_chat() {
        let chat: Jid = "15550000001@s.whatsapp.net".parse().unwrap();
        let cases = [
            (
                "archive",
                Action::Archive {
                    chat: chat.clone(),
                    archived: false,
                },
            ),
            (
                "pin_v1",
                Action::Pin {
                    chat: chat.clone(),
                    pinned: false,
                },
            ),
            (
                "mute",
                Action::Mute {
                    chat: chat.clone(),
                    until_ms: None,
                },
            ),
            (
                "markChatAsRead",
                Action::MarkRead {
                    chat: chat.clone(),
                    read: true,
                },
            ),
        ];
        for (kind, want) in cases {
            let mut commit = AppStateCommit {
                collection: "regular_low".into(),
                state: CollectionVersion {
                    version: 1,
                    hash: [0; 128],
                },
                replace: false,
                removed: Vec::new(),
                added: Vec::new(),
                chats: Vec::new(),
                contacts: Vec::new(),
                nct_salt: None,
            };
            let mut actions = Vec::new();
            removed_effect(&[kind.into(), chat.to_string()], &mut commit, &mut actions);
            assert_eq!(actions, vec![want], "{kind}");
            assert_eq!(commit.chats.len(), 1);
            assert!(commit.chats[0].only_if_stored, "{kind}");
            assert_eq!(cleared_action(&commit.chats[0]).as_ref(), actions.first());
        }
        // A record that sets no chat flag is told as nothing.
        let mut commit = AppStateCommit {
            collection: "regular".into(),
            state: CollectionVersion {
                version: 1,
                hash: [0; 128],
            },
            replace: false,
            removed: Vec::new(),
            added: Vec::new(),
            chats: Vec::new(),
            contacts: Vec::new(),
            nct_salt: None,
        };
        let mut actions = Vec::new();
        removed_effect(
            &["star".into(), chat.to_string()],
            &mut commit,
            &mut actions,
        );
        assert!(actions.is_empty() && commit.chats.is_empty());
    }
}
