//! Both names of every user a page of rows (or a batch of webhook events) mentions, read in
//! one query: rows keep a user by whichever form its message came with (the LID once the
//! mapping is known, MESSAGING.md §4), and answers name both, `…@c.us` for the phone number
//! (as `from` does) and `<user>@lid` for the LID. With them, what a failed send's message row
//! says would lift its failure (from its outbox row; while the outbox is still writing that,
//! from the account's limits now; once the row is gone, from WhatsApp's code alone).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{SendFailure, Service};
use crate::binary::{Jid, Server};
use crate::client::ReachoutTimelock;
use crate::client::messages::{MessageStatus, StoredMessage};
use crate::store::AccountId;

/// PN ↔ LID of the users a page names, and the account's own (for the side of a message that
/// is the account itself).
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// Phone-number user → LID user.
    lid_of: HashMap<String, String>,
    /// LID user → phone-number user.
    pn_of: HashMap<String, String>,
    /// The account's own phone number (bare digits), once linked.
    me: Option<String>,
}

impl Ids {
    /// The phone-number form of user `j` (itself when it is one), when known.
    pub fn pn(&self, j: &Jid) -> Option<Jid> {
        match j.server {
            Server::User | Server::LegacyUser => Some(Jid::new(j.user.clone(), Server::User)),
            Server::Lid => self
                .pn_of
                .get(&j.user)
                .map(|p| Jid::new(p.clone(), Server::User)),
            _ => None,
        }
    }

    /// The LID form of user `j` (itself when it is one), when known.
    pub fn lid(&self, j: &Jid) -> Option<Jid> {
        match j.server {
            Server::Lid => Some(Jid::new(j.user.clone(), Server::Lid)),
            Server::User | Server::LegacyUser => self
                .lid_of
                .get(&j.user)
                .map(|l| Jid::new(l.clone(), Server::Lid)),
            _ => None,
        }
    }

    /// `j` named by phone number where it is keyed by a LID whose number is known (the guide
    /// names contacts `…@c.us`).
    pub fn by_number(&self, j: &mut Jid) {
        if j.server == Server::Lid
            && let Some(pn) = self.pn(j)
        {
            *j = pn;
        }
    }

    /// `{<prefix>Pn, <prefix>Lid}` of user `j` (both null for a group, a broadcast or no one)
    /// into `out`.
    pub fn put(&self, out: &mut Value, prefix: &str, j: Option<&Jid>) {
        let (pn, lid) = match j {
            Some(j) => (
                self.pn(j).map(|p| p.c_us()),
                self.lid(j).map(|l| l.to_string()),
            ),
            None => (None, None),
        };
        out[format!("{prefix}Pn")] = json!(pn);
        out[format!("{prefix}Lid")] = json!(lid);
    }

    /// The account itself, by phone number, once linked.
    pub fn me(&self) -> Option<Jid> {
        self.me.as_ref().map(|m| Jid::new(m.clone(), Server::User))
    }
}

/// What a page of message rows needs besides the rows: both names of their users, and why
/// their failed sends failed.
#[derive(Debug, Clone, Default)]
pub struct RowContext {
    /// Both names of the users.
    pub ids: Ids,
    /// The outbox results of the page's failed sends, by WhatsApp message id.
    failures: HashMap<String, Value>,
    /// Failed sends whose outbox row has no result yet: the refusal is being recorded now
    /// (a status webhook may be rendered between the client's failed status and the outbox
    /// writing its result).
    finishing: HashSet<String>,
    /// The account's reach-out time-lock as its client knows it now (for `finishing` ones).
    timelock: Option<ReachoutTimelock>,
    /// `finishing` ones refused with 463 although a privacy token went (its client kept it).
    token_went: HashSet<String>,
}

impl RowContext {
    /// The explanation the outbox kept for send `id` (its `error`), if it ended unsent or
    /// refused.
    pub fn send_error(&self, id: &str) -> Option<Value> {
        self.failures.get(id).cloned()
    }

    /// The `error` of message `m`: `{code, message, remedy?, until?}` for a failed send with
    /// WhatsApp's error code, else None. Its outbox row's explanation when there is one (what
    /// was known when it failed: the token that went, the time-lock then); while the outbox
    /// is writing it, the code under the account's limits now (which are the failure's);
    /// once the row is gone, [`explain`] from the code alone.
    pub fn error(&self, m: &StoredMessage) -> Option<Value> {
        if !m.from_me || m.status != MessageStatus::Failed {
            return None;
        }
        if let Some(e) = self.failures.get(&m.id) {
            return Some(e.clone());
        }
        let code = m.error?;
        if self.finishing.contains(&m.id) {
            let went = self.token_went.contains(&m.id);
            return Some(explain_now(code, self.timelock.as_ref(), went));
        }
        Some(explain(code))
    }
}

/// The explanation of WhatsApp's ack error `code` on a send failing now, under the account's
/// time-lock `lock` now: what its outbox row is about to record (a 463 while time-locked is
/// `account_restricted`; else `privacy_token_rejected` when a token went with it).
fn explain_now(code: u16, lock: Option<&ReachoutTimelock>, token_went: bool) -> Value {
    let now = crate::util::clock::now_ms() / 1000;
    let f = match SendFailure::of_ack_code(code, lock, now) {
        SendFailure::PrivacyTokenRequired if token_went => SendFailure::PrivacyTokenRejected,
        f => f,
    };
    let until = match f {
        SendFailure::AccountRestricted => super::failure::timelocked(lock, now).flatten(),
        _ => None,
    };
    let message = format!(
        "WhatsApp refused it ({code}): {}",
        crate::client::messenger::refusal_reason(code)
    );
    f.result_json_until(&message, until)["error"].clone()
}

/// The explanation of WhatsApp's ack error `code` on a failed message whose outbox row is gone
/// (pruned, or never one). Decision: what a 463 stood for (no token, a token refused, the
/// account's time-lock) is recorded with the failure only in its outbox row's result; the
/// message row keeps the code alone, and the account's limits now say nothing of a failure
/// weeks old (a lock since lifted would turn it into a missing token, a new one into a lock).
/// So a 463 is left unexplained rather than guessed: `refused_by_whatsapp`, no remedy, no
/// `until`. Codes with one meaning (475 the new-chat cap, 421 a stale group) keep theirs,
/// without the cycle's end (not kept either).
pub(crate) fn explain(code: u16) -> Value {
    let f = match SendFailure::of_ack_code(code, None, 0) {
        SendFailure::PrivacyTokenRequired => SendFailure::RefusedByWhatsApp,
        f => f,
    };
    let mut message = format!(
        "WhatsApp refused it ({code}): {}",
        crate::client::messenger::refusal_reason(code)
    );
    if code == 463 {
        message.push_str(" (what went with it and the account's limits then were not kept)");
    }
    f.result_json(&message)["error"].clone()
}

/// The users message `m` names: chat, author, reactors.
pub(crate) fn users_of(m: &StoredMessage) -> impl Iterator<Item = &Jid> {
    [&m.chat, &m.sender]
        .into_iter()
        .chain(m.reactions.iter().map(|r| &r.sender))
}

impl Service {
    /// Both names of `users` (and of the account itself, `me` its phone number) in one query;
    /// a storage error leaves them unknown (null), never fails the answer.
    pub(crate) async fn ids_for<'a>(
        &self,
        account: AccountId,
        me: Option<&str>,
        users: impl IntoIterator<Item = &'a Jid>,
    ) -> Ids {
        let (mut pns, mut lids) = (HashSet::new(), HashSet::new());
        if let Some(me) = me {
            pns.insert(me.to_owned());
        }
        for j in users {
            match j.server {
                Server::User | Server::LegacyUser if !j.user.is_empty() => {
                    pns.insert(j.user.clone());
                }
                Server::Lid if !j.user.is_empty() => {
                    lids.insert(j.user.clone());
                }
                _ => {}
            }
        }
        let (pns, lids): (Vec<String>, Vec<String>) =
            (pns.into_iter().collect(), lids.into_iter().collect());
        let pairs = match self.store.lid_pairs(account, &pns, &lids).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the LID mappings");
                Vec::new()
            }
        };
        let mut ids = Ids {
            me: me.map(str::to_owned),
            ..Default::default()
        };
        for (pn, lid) in pairs {
            ids.lid_of.insert(pn.clone(), lid.clone());
            ids.pn_of.insert(lid, pn);
        }
        ids
    }

    /// The context of a page of `rows` of `account` (`me` its phone number; `users` and
    /// `sends` other users and send ids the page names): both names of their users (the rows
    /// then name LID-keyed users by number, as the guide does), and the explanations of their
    /// failed sends. Two queries whatever the page's size.
    pub(crate) async fn row_context(
        &self,
        account: AccountId,
        me: Option<&str>,
        rows: &mut [&mut StoredMessage],
        users: &[Jid],
        sends: &[String],
    ) -> RowContext {
        let ids = self
            .ids_for(
                account,
                me,
                rows.iter().flat_map(|m| users_of(m)).chain(users.iter()),
            )
            .await;
        for m in rows.iter_mut() {
            ids.by_number(&mut m.chat);
            ids.by_number(&mut m.sender);
            for r in m.reactions.iter_mut() {
                ids.by_number(&mut r.sender);
            }
        }
        let failed: Vec<String> = rows
            .iter()
            .filter(|m| m.from_me && m.status == MessageStatus::Failed)
            .map(|m| m.id.clone())
            .chain(sends.iter().cloned())
            .collect();
        let results = match self.store.send_results(account, &failed).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the sends' results");
                HashMap::new()
            }
        };
        let finishing: HashSet<String> = results
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let failures: HashMap<String, Value> = results
            .into_iter()
            .filter_map(|(id, result)| {
                let v: Value = serde_json::from_str(&result?).ok()?;
                let mut e = v.get("error")?.clone();
                // The stable code (rows kept `expired`/`cancelled` before the codes).
                if let Some(f) = e["code"].as_str().and_then(SendFailure::from_code) {
                    e["code"] = json!(f.code());
                }
                Some((id, e))
            })
            .collect();
        let session = (!finishing.is_empty())
            .then(|| self.session(account))
            .flatten();
        let token_went = match &session {
            Some(s) => finishing
                .iter()
                .filter(|id| s.client.token_went(id) == Some(true))
                .cloned()
                .collect(),
            None => HashSet::new(),
        };
        RowContext {
            ids,
            failures,
            timelock: session.and_then(|s| s.client.reachout_timelock()),
            finishing,
            token_went,
        }
    }
}

impl Service {
    /// Both names of `user` as (subaccount, agent)'s account knows them now (the send answer's
    /// `toPn`/`toLid`). Never fails: it runs after the send is stored, and a lookup error must
    /// not turn an accepted send into an error its caller would retry (names stay unknown).
    pub async fn ids_of(&self, subaccount: &str, agent: &str, user: &Jid) -> Ids {
        match self.store.connection(subaccount, agent).await {
            Ok(Some(row)) => {
                self.ids_for(row.account, row.phone_number.as_deref(), [user])
                    .await
            }
            _ => Ids::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ReachoutTimelock;

    fn ctx() -> RowContext {
        let mut ids = Ids {
            me: Some("15550000001".into()),
            ..Default::default()
        };
        for (pn, lid) in [("15550000001", "900001"), ("15550000002", "900002")] {
            ids.lid_of.insert(pn.into(), lid.into());
            ids.pn_of.insert(lid.into(), pn.into());
        }
        RowContext {
            ids,
            ..Default::default()
        }
    }

    fn msg(chat: Jid, sender: Jid, from_me: bool) -> StoredMessage {
        StoredMessage {
            id: "X".into(),
            chat,
            sender,
            from_me,
            status: if from_me {
                MessageStatus::ServerAck
            } else {
                MessageStatus::Received
            },
            ..StoredMessage::default()
        }
    }

    #[test]
    fn both_names_of_each_side_and_null_for_a_group_or_an_unknown_form() {
        let c = ctx();
        let bob_lid = Jid::new("900002", Server::Lid);
        let bob_pn = Jid::new("15550000002", Server::User);
        let me = Jid::new("15550000001", Server::User);
        // Inbound 1:1, the row keyed by bob's LID: bob is the author, we the recipient.
        let v = super::super::message_json(
            &msg(bob_lid.clone(), bob_lid.clone(), false),
            None,
            None,
            &c,
        );
        assert_eq!(v["fromPn"], json!("15550000002@c.us"));
        assert_eq!(v["fromLid"], json!("900002@lid"));
        assert_eq!(v["toPn"], json!("15550000001@c.us"));
        assert_eq!(v["toLid"], json!("900001@lid"));
        // Outbound 1:1 by phone number: we are the author.
        let v = super::super::message_json(&msg(bob_pn.clone(), me.clone(), true), None, None, &c);
        assert_eq!(v["fromPn"], json!("15550000001@c.us"));
        assert_eq!(v["toLid"], json!("900002@lid"));
        // A group message: its participant is the author, no user is the recipient.
        let group = Jid::new("120363000000000001", Server::Group);
        let v =
            super::super::message_json(&msg(group.clone(), bob_pn.clone(), false), None, None, &c);
        assert_eq!(v["fromLid"], json!("900002@lid"));
        assert_eq!((&v["toPn"], &v["toLid"]), (&Value::Null, &Value::Null));
        let v = super::super::message_json(&msg(group, me, true), None, None, &c);
        assert_eq!(v["fromLid"], json!("900001@lid"));
        assert_eq!(v["toPn"], Value::Null);
        // A number without a known LID: its number, a null LID.
        let stranger = Jid::new("4915550099", Server::User);
        let v = super::super::message_json(&msg(stranger.clone(), stranger, false), None, None, &c);
        assert_eq!(v["fromPn"], json!("4915550099@c.us"));
        assert_eq!(v["fromLid"], Value::Null);
    }

    #[test]
    fn a_failed_row_without_its_outbox_row_is_explained_from_its_code_alone() {
        // A 463 whose circumstances were not kept: no guess from the limits of today.
        let e = explain(463);
        assert_eq!(e["code"], json!("refused_by_whatsapp"), "{e}");
        assert_eq!(e["remedy"], Value::Null, "{e}");
        assert_eq!(e["until"], Value::Null, "{e}");
        assert!(e["message"].as_str().unwrap().contains("(463)"), "{e}");
        // Codes with one meaning keep it.
        assert_eq!(explain(475)["code"], json!("new_chat_cap_reached"));
        assert_eq!(explain(475)["until"], Value::Null);
        assert_eq!(explain(421)["code"], json!("stale_group"));
        assert_eq!(explain(479)["code"], json!("refused_by_whatsapp"));
        assert_eq!(explain(479)["remedy"], Value::Null);
    }

    #[test]
    fn a_row_with_its_outbox_result_reads_that_not_the_code() {
        let mut c = ctx();
        let recorded = json!({ "code": "account_restricted", "message": "m", "until": "2030-01-01T00:00:00.000Z" });
        c.failures.insert("X".into(), recorded.clone());
        let mut m = msg(
            Jid::new("15550000002", Server::User),
            Jid::new("15550000001", Server::User),
            true,
        );
        m.status = MessageStatus::Failed;
        m.error = Some(463);
        assert_eq!(c.error(&m), Some(recorded));
        // While the outbox is writing it: the code under the account's limits now.
        c.failures.clear();
        c.finishing.insert("X".into());
        let now = crate::util::clock::now_ms() / 1000;
        c.timelock = Some(ReachoutTimelock {
            active: true,
            ends_at: Some(now + 3600),
            enforcement: "DEFAULT".into(),
        });
        let e = c.error(&m).unwrap();
        assert_eq!(e["code"], json!("account_restricted"), "{e}");
        assert!(e["until"].is_string(), "{e}");
        c.timelock = None;
        assert_eq!(
            c.error(&m).unwrap()["code"],
            json!("privacy_token_required")
        );
        // A token went with it (its client says so): not a missing one.
        c.token_went.insert("X".into());
        assert_eq!(
            c.error(&m).unwrap()["code"],
            json!("privacy_token_rejected")
        );
        c.token_went.clear();
        // Once its outbox row is gone: the code alone, whatever the limits now.
        c.finishing.clear();
        c.timelock = Some(ReachoutTimelock {
            active: true,
            ends_at: Some(now + 3600),
            enforcement: "DEFAULT".into(),
        });
        assert_eq!(c.error(&m).unwrap()["code"], json!("refused_by_whatsapp"));
    }
}
