//! Agents as a whole: how many one subaccount may have (a new one past the cap is refused;
//! existing ones are never touched by it), and removing one with everything stored for it.

use std::sync::Arc;

use super::{Service, ServiceError};
use crate::store::AccountId;

/// Most agents one subaccount may have unless configured (`WA_GATEWAY_MAX_AGENTS`).
pub const DEFAULT_MAX_AGENTS: usize = 100;

impl Service {
    /// The account of (subaccount, agent), made now unless that would take the subaccount past
    /// its cap of agents.
    pub(super) async fn account_within_cap(
        &self,
        subaccount: &str,
        agent: &str,
    ) -> Result<AccountId, ServiceError> {
        self.store
            .account_within(subaccount, agent, self.max_agents)
            .await?
            .ok_or(ServiceError::AgentLimit(self.max_agents))
    }

    /// Removes (subaccount, agent) and all its data: its running client is logged out first
    /// (the phone forgets the device when WhatsApp can be told; best effort) and stopped, then
    /// every row of it goes in one transaction (keys, sessions, credentials, messages and
    /// receipts, outbox, webhook and its events, groups, connection row, activities). Requests
    /// still waiting for one of its sends answer that its record is gone. `NotFound` when the
    /// agent was never used.
    pub async fn delete_agent(
        self: &Arc<Self>,
        subaccount: &str,
        agent: &str,
    ) -> Result<(), ServiceError> {
        let Some(account) = self.store.find_account(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let gate = self.gate(account);
        let _g = gate.lock().await;
        let session = self.end_session(account, None);
        if let Some(s) = &session {
            // Linked, it asks WhatsApp to unlink the device (and wipes its keys even when
            // WhatsApp cannot be told); showing a QR code, it just stops.
            s.client.logout().await;
        }
        let Some(removed) = self.store.delete_account(account).await? else {
            // Another removal got there first.
            return Err(ServiceError::NotFound);
        };
        for pk in removed.queued_sends {
            self.finished(pk);
        }
        tracing::info!(
            subaccount,
            agent,
            was_running = session.is_some(),
            "agent removed with its data"
        );
        Ok(())
    }
}
