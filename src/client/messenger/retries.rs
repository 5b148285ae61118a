//! Retry receipts both ways: counting ours per message, answering a peer's by resending the
//! message to that device with fresh keys when needed (MESSAGING.md §2.6–2.7).

use std::collections::VecDeque;
use std::sync::Mutex;

use prost::Message as _;

use super::{MAX_RETRIES, Messenger, SendError};
use crate::binary::{Jid, Server};
use crate::client::link::IQ_TIMEOUT;
use crate::client::recv::is_me;
use crate::client::store::CredsStore;
use crate::proto::wa;
use crate::signal::store::ApplyChanges;
use crate::signal::{PreKeyBundle, ProtocolAddress, SignalError};
use crate::socket::NodeSender;
use crate::stanza;

/// Messages whose retry counts are remembered.
pub(super) const RETRY_MEMORY: usize = 1024;

/// Counts one more for (device, message) in a bounded memory of counts; a poisoned memory
/// counts as exhausted.
pub(super) fn count_up(
    memory: &Mutex<VecDeque<((Jid, String), u32)>>,
    from: &Jid,
    id: &str,
) -> u32 {
    let Ok(mut r) = memory.lock() else {
        return u32::MAX;
    };
    let key = (from.clone(), id.to_owned());
    if let Some((_, n)) = r.iter_mut().find(|(k, _)| *k == key) {
        *n += 1;
        return *n;
    }
    if r.len() == RETRY_MEMORY {
        r.pop_front();
    }
    r.push_back((key, 1));
    1
}

impl<S: CredsStore> Messenger<S> {
    pub(super) fn bump_retry(&self, from: &Jid, id: &str) -> u32 {
        count_up(&self.retries, from, id)
    }

    pub(super) fn bump_answer(&self, from: &Jid, id: &str) -> u32 {
        count_up(&self.answered, from, id)
    }

    pub(super) fn forget_retry(&self, from: &Jid, id: &str) {
        if let Ok(mut r) = self.retries.lock() {
            r.retain(|((f, i), _)| !(f == from && i == id));
        }
    }

    /// Resends message `req.id` to the device that could not decrypt it (MESSAGING.md §2.7).
    pub(super) async fn answer_retry(
        &self,
        sender: &NodeSender,
        chat: &Jid,
        req: &stanza::RetryRequest,
    ) -> Result<(), SendError> {
        if req.count >= MAX_RETRIES {
            return Ok(());
        }
        let account = self.account().ok_or(SendError::NotConnected)?;
        let Some(row) = self.store.sent_message(chat, &req.id).await? else {
            tracing::debug!(id = req.id, "retry for a message we do not have");
            return Ok(());
        };
        // Whatever counts a peer claims, one message is resent to one device at most
        // MAX_RETRIES times: retry receipts cannot make us encrypt (and fetch keys) forever.
        // Counted only for messages we have, so made-up ids cannot push a real one's count
        // out of the bounded memory.
        if self.bump_answer(&req.from, &req.id) > MAX_RETRIES {
            return Ok(());
        }
        if chat.server == Server::Group {
            return self.answer_group_retry(sender, &account, &row, req).await;
        }
        let addr = ProtocolAddress::from_jid(&self.canonical(&req.from).await);
        let own = is_me(&req.from, &account.me);
        let bundle = self.retry_bundle(sender, req, &addr).await?;
        let message = wa::Message::decode(&row.raw[..]).unwrap_or_default();
        let body = if own {
            wa::Message {
                device_sent_message: Some(Box::new(wa::DeviceSentMessage {
                    destination_jid: Some(chat.to_string()),
                    message: Some(Box::new(message)),
                    phash: None,
                })),
                ..Default::default()
            }
        } else {
            message
        }
        .encode_to_vec();
        let lock = self.cipher.lock_session(&addr).await;
        let (ct, _, changes) = self
            .cipher
            .encrypt_staged(&lock, &addr, bundle.as_ref(), &stanza::pad(body))
            .await?;
        self.cipher
            .store()
            .apply(&changes)
            .await
            .map_err(SignalError::from)?;
        drop(lock);
        let t = row.timestamp.to_string();
        let stanza = super::send::with_type(
            stanza::retry_stanza(
                &row.id,
                &req.from,
                &ct,
                req.count,
                Some(&t),
                &account.me.signed_identity,
            ),
            &row.raw,
        );
        let _ = sender.send(&stanza).await;
        Ok(())
    }

    /// The keys to resend with for a retry receipt (MESSAGING.md §2.7): those it carried, else
    /// a fetched bundle when there is no session or this is a second attempt or later (the
    /// session itself may be what fails), else none (the session as it is).
    pub(super) async fn retry_bundle(
        &self,
        sender: &NodeSender,
        req: &stanza::RetryRequest,
        addr: &ProtocolAddress,
    ) -> Result<Option<PreKeyBundle>, SendError> {
        Ok(match &req.keys {
            Some(k) => Some(k.clone()),
            None if !self.cipher.has_session(addr).await? || req.count >= 2 => {
                let answer = self
                    .link
                    .iq
                    .query(
                        sender,
                        stanza::prekey_query(std::slice::from_ref(&req.from)),
                        IQ_TIMEOUT,
                    )
                    .await?;
                stanza::parse_bundles(&answer).remove(&req.from)
            }
            None => None,
        })
    }
}
