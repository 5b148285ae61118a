//! The account's reach-out limits: the time-lock and the new-chat message capping, learnt from
//! WhatsApp's `w:mex` notifications, and asked at connect, after a 463 or 475 (or when the
//! owner asks); kept in memory, evented when they change.

use super::{Messenger, SendError};
use crate::binary::Node;
use crate::client::events::Event;
use crate::client::link::IQ_TIMEOUT;
use crate::client::store::CredsStore;
use crate::stanza::mex::{self, NewChatCapping, ReachoutTimelock};

impl<S: CredsStore> Messenger<S> {
    /// A `<notification type="mex">` (acked by the reader already).
    pub(super) fn on_mex(&self, node: &Node) {
        if let Some(t) = mex::parse_timelock_notification(node, self.clock.now_unix()) {
            self.set_timelock(t);
        } else if let Some(c) = mex::parse_capping_notification(node) {
            self.set_capping(c);
        }
    }

    fn set_capping(&self, c: NewChatCapping) {
        let changed = match self.capping.lock() {
            Ok(mut g) => {
                let changed = g.as_ref() != Some(&c);
                *g = Some(c.clone());
                changed
            }
            Err(_) => false,
        };
        if changed {
            if c.capped(self.clock.now_unix()) {
                tracing::warn!(until = ?c.cycle_end, "new-chat message cap reached");
            }
            self.publish(Event::NewChatCapping(c));
        }
    }

    /// Asks WhatsApp for the account's new-chat message capping.
    pub(super) async fn fetch_capping(&self) -> Result<NewChatCapping, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let answer = self
            .link
            .iq
            .query(&sender, mex::capping_query(), IQ_TIMEOUT)
            .await?;
        let c = mex::parse_capping_result(&answer)
            .map_err(|e| SendError::Unexpected(format!("new-chat capping: {e}")))?;
        self.set_capping(c.clone());
        Ok(c)
    }

    /// Learns both limits (after a 463 or 475); failures are only logged.
    pub(super) async fn refresh_limits(&self) {
        self.refresh_timelock().await;
        self.refresh_capping().await;
    }

    /// Learns the new-chat capping (at connect); a failure is only logged.
    pub(in crate::client) async fn refresh_capping(&self) {
        if let Err(e) = self.fetch_capping().await {
            tracing::debug!(error = %e, "cannot read the new-chat capping");
        }
    }

    fn set_timelock(&self, t: ReachoutTimelock) {
        let changed = match self.timelock.lock() {
            Ok(mut g) => {
                let changed = g.as_ref() != Some(&t);
                *g = Some(t.clone());
                changed
            }
            Err(_) => false,
        };
        if changed {
            if t.active {
                tracing::warn!(until = ?t.ends_at, enforcement = %t.enforcement, "reach-out time-lock: new chats are barred");
            } else {
                tracing::info!("reach-out time-lock lifted");
            }
            self.publish(Event::ReachoutTimelock(t));
        }
    }

    /// Asks WhatsApp for the account's time-lock.
    pub(super) async fn fetch_timelock(&self) -> Result<ReachoutTimelock, SendError> {
        let sender = self.sender().ok_or(SendError::NotConnected)?;
        let answer = self
            .link
            .iq
            .query(&sender, mex::timelock_query(), IQ_TIMEOUT)
            .await?;
        let t = mex::parse_timelock_result(&answer)
            .map_err(|e| SendError::Unexpected(format!("reach-out time-lock: {e}")))?;
        self.set_timelock(t.clone());
        Ok(t)
    }

    /// Learns the time-lock after a refusal that may come from it; a failure is only logged.
    pub(super) async fn refresh_timelock(&self) {
        if let Err(e) = self.fetch_timelock().await {
            tracing::debug!(error = %e, "cannot read the reach-out time-lock");
        }
    }
}
