//! Privacy tokens on 1:1 sends (MESSAGING.md §1, CLIENT-FEATURES §1): contacts' tctokens stored
//! and attached to what we send them while valid, else a cstoken from the NCT salt; ours issued
//! to contacts we write to once per 7-day bucket.
//!
//! Lifecycle, as whatsmeow has it (`tctoken.go`, `send.go` `sendDM`), with these differences:
//! - validity: a held token is attached only within [`privacy::TC_NUM_BUCKETS`] buckets of its
//!   time (both references); an expired one is kept (a newer notification replaces it) but
//!   not attached, so the cstoken applies instead.
//! - issuing: after an accepted send when the current bucket is later than our last issue's
//!   (whatsmeow's rule). whatsmeow issues in a goroutine before the ack; we issue after the
//!   ack and only if the send was accepted (a refused send started no chat), and persist the
//!   issue time (whatsmeow keeps it in memory, reloading from its store).
//! - no AB-prop gating (whatsapp-rust gates both tokens on props we do not receive): always on,
//!   as whatsmeow.
//! - our own account (PN or LID) never gets a token (whatsapp-rust; whatsmeow would).

use super::{LID_CACHE, Messenger};
use crate::binary::{Jid, Node, Server};
use crate::client::events::Event;
use crate::client::link::IQ_TIMEOUT;
use crate::client::store::{CredsStore, Me};
use crate::stanza::privacy;

/// Longest privacy token accepted (WhatsApp's are a few dozen bytes).
pub(super) const MAX_TOKEN_BYTES: usize = 1024;

/// A contact's tctoken to us and its time (unix seconds).
pub(super) type HeldToken = (Vec<u8>, u64);

/// Which privacy token a 1:1 stanza carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedToken {
    /// The recipient's tctoken (valid: within its buckets).
    TcToken,
    /// Our cstoken: HMAC of the recipient's LID under the NCT salt.
    CsToken,
}

impl<S: CredsStore> Messenger<S> {
    /// `<notification type="privacy_token" from=X><tokens><token jid t type="trusted_contact">`:
    /// X's token for us, attached to what we send X from now on. False when a token could not
    /// be stored (the notification is then left unacked, and redelivered).
    pub(super) async fn on_privacy_token(&self, node: &Node) -> bool {
        let Some(from) = node.get_jid("from") else {
            return true;
        };
        let contact = self.canonical(&from.to_non_ad()).await;
        let tokens = node
            .child("tokens")
            .map(|t| t.child_nodes().to_vec())
            .unwrap_or_default();
        for tok in tokens.iter().filter(|t| t.tag == "token").take(16) {
            if tok.get_str("type").as_deref() != Some("trusted_contact") {
                continue;
            }
            let (Some(bytes), Some(t)) = (
                tok.content_bytes(),
                tok.get_str("t").and_then(|t| t.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if bytes.len() > MAX_TOKEN_BYTES {
                continue;
            }
            match self.store.set_privacy_token(&contact, bytes, t).await {
                Ok(()) => {
                    // The store keeps the newest; the cache asks it again.
                    if let Ok(mut m) = self.tokens.lock() {
                        m.remove(&contact);
                    }
                    self.publish(Event::PrivacyToken {
                        jid: contact.clone(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store a privacy token; it will be redelivered");
                    return false;
                }
            }
        }
        true
    }

    /// The token `contact` gave us with its time, through the cache (expired or not).
    pub(super) async fn token_for(&self, contact: &Jid) -> Option<(Vec<u8>, u64)> {
        if let Some(t) = self
            .tokens
            .lock()
            .ok()
            .and_then(|m| m.get(contact).cloned())
        {
            return t;
        }
        let t = match self.store.privacy_token(contact).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "privacy token lookup failed");
                return None;
            }
        };
        if let Ok(mut m) = self.tokens.lock() {
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), t.clone());
        }
        t
    }

    /// Whether we hold a valid (unexpired) tctoken from `contact`.
    pub(super) async fn has_valid_token(&self, contact: &Jid) -> bool {
        let now = self.clock.now_unix();
        self.token_for(contact)
            .await
            .is_some_and(|(_, t)| !privacy::tc_token_expired(t, now))
    }

    /// The privacy token child for a 1:1 stanza to `chat` (rows' key) sent as `wire`: the
    /// contact's tctoken while valid, else our cstoken when the salt and the contact's LID are
    /// known, else none (CLIENT-FEATURES §1.4: tctoken, then cstoken, then nothing). Never for
    /// our own account, groups, broadcast, newsletters, the PSA or bots.
    pub(super) async fn privacy_token_child(
        &self,
        chat: &Jid,
        wire: &Jid,
        me: &Me,
    ) -> Option<(Node, AttachedToken)> {
        if !privacy::token_recipient(wire) || !privacy::token_recipient(chat) || own(chat, me) {
            return None;
        }
        let now = self.clock.now_unix();
        if let Some((token, t)) = self.token_for(chat).await
            && !privacy::tc_token_expired(t, now)
        {
            return Some((Node::new("tctoken").bytes(token), AttachedToken::TcToken));
        }
        let lid = match chat.server {
            Server::Lid => chat.user.clone(),
            // No PN→LID mapping: no cstoken (whatsmeow `generateCsToken`).
            _ => self.lid_of(&chat.user).await?,
        };
        let salt = match self.store.nct_salt().await {
            Ok(s) => s?,
            Err(e) => {
                tracing::warn!(error = %e, "NCT salt unreadable; no cstoken");
                return None;
            }
        };
        let token = privacy::cs_token(salt.bytes(), &lid);
        Some((
            Node::new("cstoken").bytes(token.to_vec()),
            AttachedToken::CsToken,
        ))
    }

    /// Issues our token to `contact` (so they may write to us) when the current 7-day bucket
    /// is later than our last issue to them (whatsmeow `shouldSendNewTCToken`), after a send
    /// they accepted; users only, never ourselves.
    pub(super) async fn issue_token(&self, contact: &Jid, wire: &Jid, me: &Me) {
        if !privacy::token_recipient(wire) || own(contact, me) {
            return;
        }
        let now = self.clock.now_unix();
        // Most sends go to contacts we issued to lately: no store round trip for them.
        if let Ok(mut m) = self.issued.lock() {
            if m.get(contact)
                .is_some_and(|t| !privacy::tc_token_due(Some(*t), now))
            {
                return;
            }
            if m.len() >= LID_CACHE {
                m.clear();
            }
            m.insert(contact.clone(), now);
        }
        match self.store.set_token_issued(contact, now).await {
            Ok(Some(last)) if !privacy::tc_token_due(Some(last), now) => {
                // Not yet due: put the earlier time back.
                let _ = self.store.set_token_issued(contact, last).await;
                if let Ok(mut m) = self.issued.lock() {
                    m.insert(contact.clone(), last);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record an issued privacy token");
                return;
            }
        }
        let Some(sender) = self.sender() else { return };
        let iq = Node::new("iq")
            .attr("xmlns", "privacy")
            .attr("type", "set")
            .attr("to", Jid::server_jid())
            .children(vec![Node::new("tokens").children(vec![
                Node::new("token")
                    .attr("jid", wire.to_non_ad())
                    .attr("t", now.to_string())
                    .attr("type", "trusted_contact"),
            ])]);
        if let Err(e) = self.link.iq.query(&sender, iq, IQ_TIMEOUT).await {
            tracing::debug!(error = %e, "privacy token not issued");
        }
    }
}

/// Whether reach-out limits apply to a send to a contact (CLIENT-FEATURES §1; the issue's
/// rule): warm if we hold a valid tctoken from it or it wrote to us, else cold. Groups,
/// ourselves and what carries no token are `NotApplicable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// We hold its valid tctoken, or it wrote to us.
    Warm,
    /// Neither: a first contact, subject to the time-lock and the new-chat cap.
    Cold,
    /// Not a 1:1 user chat (a group, ourselves, a bot…): limits do not apply.
    NotApplicable,
}

impl<S: CredsStore> Messenger<S> {
    /// Whether `to` (PN or LID user) is warm or cold for us.
    pub(super) async fn warmth(&self, to: Jid) -> Warmth {
        let Some(account) = self.account() else {
            return Warmth::NotApplicable;
        };
        if !privacy::token_recipient(&to) || own(&to, &account.me) {
            return Warmth::NotApplicable;
        }
        let chat = self.canonical(&to).await.to_non_ad();
        if self.has_valid_token(&chat).await {
            return Warmth::Warm;
        }
        match self.store.wrote_to_us(&chat).await {
            Ok(true) => Warmth::Warm,
            Ok(false) => Warmth::Cold,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell a contact's warmth; taken as cold");
                Warmth::Cold
            }
        }
    }
}

/// Whether `jid` is our own account, by phone number or LID.
fn own(jid: &Jid, me: &Me) -> bool {
    (jid.server == Server::User && jid.user == me.jid.user)
        || (jid.server == Server::Lid && me.lid.as_ref().is_some_and(|l| l.user == jid.user))
}
