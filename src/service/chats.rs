//! Chats and contacts of an agent (issue 23): read from the store (so they answer while the
//! client is offline too), and the on-demand history request through the running client.

use super::{Service, ServiceError};
use crate::binary::{Jid, Server};
use crate::client::account::{ChatSummary, Contact};
use crate::client::store::{AccountStore, CredsStore};
use crate::store::connections::HistoryRow;

impl Service {
    /// The agent's account id.
    async fn account_of(&self, subaccount: &str, agent: &str) -> Result<i64, ServiceError> {
        match self.store.connection(subaccount, agent).await? {
            Some(row) => Ok(row.account),
            None => Err(ServiceError::NotFound),
        }
    }

    /// The agent's chats: pinned first, then by their newest message.
    pub async fn chats(
        &self,
        subaccount: &str,
        agent: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<ChatSummary>, ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        self.store
            .creds(account)
            .chats(limit, skip)
            .await
            .map_err(store)
    }

    /// One chat's messages, newest first (`chat` as the API names it: a PN chat is found
    /// under its LID once known).
    pub async fn chat_messages(
        &self,
        subaccount: &str,
        agent: &str,
        chat: &Jid,
        limit: u32,
        skip: u32,
    ) -> Result<(Vec<HistoryRow>, super::RowContext), ServiceError> {
        let Some(row) = self.store.connection(subaccount, agent).await? else {
            return Err(ServiceError::NotFound);
        };
        let chat = self.canonical_chat(row.account, chat).await?;
        let mut rows = self
            .store
            .chat_history(row.account, &chat, limit, skip)
            .await?;
        let ctx = self.page_context(&row, &mut rows).await;
        Ok((rows, ctx))
    }

    /// The agent's contacts, by name, each with whether it is warm now ([`Contact::warm`]).
    pub async fn contacts(
        &self,
        subaccount: &str,
        agent: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<(Contact, bool)>, ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        let contacts = self
            .store
            .creds(account)
            .contacts(limit, skip)
            .await
            .map_err(store)?;
        let now = self.account_now(account);
        Ok(contacts
            .into_iter()
            .map(|c| {
                let warm = c.warm(now);
                (c, warm)
            })
            .collect())
    }

    /// The time warmth is judged at: the agent's client clock (the one its sends are gated
    /// by), the system clock when it has no session.
    fn account_now(&self, account: i64) -> u64 {
        use crate::util::clock::Clock as _;
        self.session(account)
            .map(|s| s.client.now_unix())
            .unwrap_or_else(|| crate::util::clock::SystemClock.now_unix())
    }

    /// One contact by its PN or LID JID, with whether it is warm now; None when unknown.
    pub async fn contact(
        &self,
        subaccount: &str,
        agent: &str,
        jid: &Jid,
    ) -> Result<Option<(Contact, bool)>, ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        let c = self
            .store
            .creds(account)
            .contact(jid)
            .await
            .map_err(store)?;
        let now = self.account_now(account);
        Ok(c.map(|c| {
            let warm = c.warm(now);
            (c, warm)
        }))
    }

    /// Asks the agent's phone for `count` messages of `chat` older than the oldest stored;
    /// they arrive as history (not announced as received). The request's message id.
    pub async fn request_history(
        &self,
        subaccount: &str,
        agent: &str,
        chat: &Jid,
        count: u32,
    ) -> Result<String, ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        let Some(session) = self.session(account) else {
            return Err(ServiceError::NotConnected("disconnected".into()));
        };
        if !matches!(session.client.state(), crate::client::ConnState::Connected) {
            return Err(ServiceError::NotConnected("not_logged_in".into()));
        }
        Ok(session.client.request_history(chat, count).await?)
    }

    /// Archives, pins, mutes or marks read a chat for every device of the account (an
    /// app-state patch; see [`crate::client::Client::chat_action`]).
    pub async fn chat_action(
        &self,
        subaccount: &str,
        agent: &str,
        chat: &Jid,
        action: crate::client::ChatAction,
    ) -> Result<(), ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        let Some(session) = self.session(account) else {
            return Err(ServiceError::NotConnected("disconnected".into()));
        };
        if !matches!(session.client.state(), crate::client::ConnState::Connected) {
            return Err(ServiceError::NotConnected("not_logged_in".into()));
        }
        Ok(session.client.chat_action(chat, action).await?)
    }

    /// Now (unix seconds) on the clock of the agent's client: a chat action's relative times
    /// count from it, as the client's own app-state timestamps do.
    pub async fn client_now(&self, subaccount: &str, agent: &str) -> Result<u64, ServiceError> {
        let account = self.account_of(subaccount, agent).await?;
        let Some(session) = self.session(account) else {
            return Err(ServiceError::NotConnected("disconnected".into()));
        };
        Ok(session.client.now_unix())
    }

    /// A chat JID as messages are keyed: a phone number's LID once known.
    async fn canonical_chat(&self, account: i64, chat: &Jid) -> Result<Jid, ServiceError> {
        let chat = chat.to_non_ad();
        if chat.server == Server::User
            && let Some(lid) = self
                .store
                .creds(account)
                .lid_for(&chat.user)
                .await
                .map_err(store)?
        {
            return Ok(Jid::new(lid, Server::Lid));
        }
        Ok(chat)
    }
}

fn store(e: crate::client::store::CredsStoreError) -> ServiceError {
    ServiceError::Store(crate::store::StoreError::Account(e.0))
}
