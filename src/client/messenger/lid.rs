//! LID ↔ phone-number mappings: learned from stanza attributes, usync and history; chats and
//! sessions are keyed by the LID once known (MESSAGING.md §4).

use super::{LID_CACHE, Messenger};
use crate::binary::{Jid, Node, Server};
use crate::client::store::CredsStore;

impl<S: CredsStore> Messenger<S> {
    /// The LID user of phone-number user `pn`, if known.
    pub(super) async fn lid_of(&self, pn: &str) -> Option<String> {
        if let Some(v) = self.lids.lock().ok().and_then(|m| m.get(pn).cloned()) {
            return v;
        }
        let found = match self.store.lid_for(pn).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "LID lookup failed");
                return None;
            }
        };
        if let Ok(mut m) = self.lids.lock() {
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(pn.to_owned(), found.clone());
        }
        found
    }

    /// Records `pn` ↔ `lid` (bare users); sessions and rows move to the LID.
    pub(super) async fn learn(&self, pn: &str, lid: &str) {
        if pn.is_empty() || lid.is_empty() || self.lid_of(pn).await.as_deref() == Some(lid) {
            return;
        }
        match self.store.learn_lid(pn, lid).await {
            Ok(()) => self.learned(pn, lid),
            Err(e) => tracing::warn!(error = %e, "cannot store a LID mapping"),
        }
    }

    /// Records many pairs in one store transaction (an app-state snapshot names one per
    /// contact); those already known, and repeats, are skipped. A number named twice is the
    /// LID it was named with last, as the store decides (`CredsStore::learn_lids`). What the
    /// cache does not answer is looked up in one store query for the batch, not one per pair.
    pub(super) async fn learn_many(&self, pairs: &[(String, String)]) {
        let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, (pn, lid)) in pairs.iter().enumerate() {
            if !pn.is_empty() && !lid.is_empty() {
                last.insert(pn.as_str(), i);
            }
        }
        let batch: Vec<&(String, String)> = pairs
            .iter()
            .enumerate()
            .filter(|(i, (pn, _))| last.get(pn.as_str()) == Some(i))
            .map(|(_, p)| p)
            .collect();
        let mut known: std::collections::HashMap<&str, Option<String>> =
            std::collections::HashMap::with_capacity(batch.len());
        if let Ok(m) = self.lids.lock() {
            for (pn, _) in &batch {
                if let Some(v) = m.get(pn.as_str()) {
                    known.insert(pn.as_str(), v.clone());
                }
            }
        }
        let ask: Vec<String> = batch
            .iter()
            .filter(|(pn, _)| !known.contains_key(pn.as_str()))
            .map(|(pn, _)| pn.clone())
            .collect();
        if !ask.is_empty() {
            match self.store.lids_for(&ask).await {
                Ok(mut found) => {
                    if let Ok(mut m) = self.lids.lock() {
                        for pn in &ask {
                            if m.len() >= LID_CACHE {
                                m.clear();
                            }
                            m.insert(pn.clone(), found.get(pn).cloned());
                        }
                    }
                    for pn in &ask {
                        known.insert(pn.as_str(), found.remove(pn));
                    }
                }
                // Unknown then: the store skips pairs it holds.
                Err(e) => tracing::warn!(error = %e, "LID lookup failed"),
            }
        }
        let new: Vec<(String, String)> = batch
            .into_iter()
            .filter(|(pn, lid)| {
                known.get(pn.as_str()).and_then(|l| l.as_deref()) != Some(lid.as_str())
            })
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        match self.store.learn_lids(&new).await {
            Ok(()) => self.learned_many(&new),
            Err(e) => tracing::warn!(error = %e, pairs = new.len(), "cannot store LID mappings"),
        }
    }

    /// What follows a stored pair in memory: caches keyed by the phone number move to the LID.
    pub(super) fn learned(&self, pn: &str, lid: &str) {
        self.learned_many(&[(pn.to_owned(), lid.to_owned())]);
        tracing::debug!(pn, lid, "learned a LID");
    }

    /// [`Self::learned`] for many stored pairs: one pass over each cache, whatever their
    /// number (a snapshot or a history chunk names thousands).
    pub(super) fn learned_many(&self, pairs: &[(String, String)]) {
        if pairs.is_empty() {
            return;
        }
        if let Ok(mut t) = self.tokens.lock() {
            // The token moved with the contact to its LID.
            for (pn, lid) in pairs {
                t.remove(&Jid::new(pn, Server::User));
                t.remove(&Jid::new(lid, Server::Lid));
            }
        }
        if let Ok(mut m) = self.lids.lock() {
            // Another number may have had one of these LIDs: forget those cached answers.
            let lids: std::collections::HashSet<&str> =
                pairs.iter().map(|(_, l)| l.as_str()).collect();
            m.retain(|_, v| !v.as_deref().is_some_and(|l| lids.contains(l)));
            for (pn, lid) in pairs {
                if m.len() >= LID_CACHE {
                    m.clear();
                }
                m.insert(pn.clone(), Some(lid.clone()));
            }
        }
        // Sends waiting for a receipt are keyed by their chat, which just moved: the receipt
        // will name the LID chat.
        if let Ok(mut w) = self.watched.lock() {
            let to_lid: std::collections::HashMap<Jid, Jid> = pairs
                .iter()
                .map(|(pn, lid)| (Jid::new(pn, Server::User), Jid::new(lid, Server::Lid)))
                .collect();
            let moved: Vec<((Jid, String), std::time::Instant)> = w
                .iter()
                .filter(|((chat, _), _)| to_lid.contains_key(chat))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            for ((from, id), since) in moved {
                w.remove(&(from.clone(), id.clone()));
                if let Some(to) = to_lid.get(&from) {
                    w.insert((to.clone(), id), since);
                }
            }
        }
    }

    /// The JID we key sessions and chats by: the LID form of a phone-number JID once its LID
    /// is known (device kept), anything else as it is.
    pub(super) async fn canonical(&self, jid: &Jid) -> Jid {
        if jid.server == Server::User
            && !jid.user.is_empty()
            && let Some(lid) = self.lid_of(&jid.user).await
        {
            return Jid::with_device(lid, jid.device, Server::Lid);
        }
        jid.clone()
    }

    /// Mappings a message's attributes carry (`sender_lid` on a PN sender, `sender_pn` on a
    /// LID sender, the same for a recipient).
    pub(super) async fn learn_from_attrs(&self, node: &Node, from: &Jid) {
        let pair = |a: &Jid, b: Option<Jid>| -> Option<(String, String)> {
            let b = b?;
            match (a.server.clone(), b.server.clone()) {
                (Server::User, Server::Lid) => Some((a.user.clone(), b.user)),
                (Server::Lid, Server::User) => Some((b.user, a.user.clone())),
                _ => None,
            }
        };
        let from_pair = pair(from, node.get_jid("sender_lid"))
            .or_else(|| pair(from, node.get_jid("sender_pn")));
        let recipient_pair = node.get_jid("recipient").and_then(|r| {
            pair(&r, node.get_jid("peer_recipient_lid"))
                .or_else(|| pair(&r, node.get_jid("peer_recipient_pn")))
        });
        for (pn, lid) in from_pair.into_iter().chain(recipient_pair) {
            self.learn(&pn, &lid).await;
        }
    }
}
