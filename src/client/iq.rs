//! iq request/response: each query gets a fresh id and a waiter; the connection's reader hands
//! every `result`/`error` iq to [`IqTracker::resolve`]. A query ends with the answer, the
//! server's error, a timeout, or the connection's end (never hangs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::binary::{Jid, Node};
use crate::socket::NodeSender;

/// Why a query got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqError {
    /// No answer within the time allowed.
    #[error("no answer to iq within {0:?}")]
    Timeout(Duration),
    /// The connection ended first (or there was none).
    #[error("not connected")]
    Disconnected,
    /// The server answered `type="error"`.
    #[error("server error {code}: {text}")]
    Server {
        /// `<error code>` (0 if absent).
        code: u16,
        /// `<error text>`.
        text: String,
    },
}

/// Pending queries of one client, keyed by iq id.
#[derive(Debug)]
pub struct IqTracker {
    prefix: String,
    seq: AtomicU64,
    waiting: Mutex<HashMap<String, oneshot::Sender<Node>>>,
}

impl Default for IqTracker {
    fn default() -> IqTracker {
        // A random prefix keeps ids unique across reconnects and processes (as the references do).
        IqTracker {
            prefix: crate::util::ids::iq_prefix(),
            seq: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes the waiter if the query is abandoned (timeout, cancelled future).
struct Waiter<'a> {
    tracker: &'a IqTracker,
    id: String,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.tracker.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

impl IqTracker {
    /// A fresh iq id.
    pub fn next_id(&self) -> String {
        format!(
            "{}{}",
            self.prefix,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Number of queries waiting.
    pub fn pending(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Hands an incoming iq answer to its waiter; false if nobody asked (the caller handles it).
    pub fn resolve(&self, node: &Node) -> bool {
        if node.tag != "iq" || !matches!(node.get_str("type").as_deref(), Some("result" | "error"))
        {
            return false;
        }
        let Some(id) = node.get_str("id") else {
            return false;
        };
        let waiter = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(id.as_ref()));
        match waiter {
            Some(tx) => {
                let _ = tx.send(node.clone());
                true
            }
            None => false,
        }
    }

    /// Fails every pending query with [`IqError::Disconnected`] (the connection ended).
    pub fn fail_all(&self) {
        if let Ok(mut w) = self.waiting.lock() {
            w.clear();
        }
    }

    /// Sends `node` (an `<iq>`; `id` and `to` are filled in when absent) and waits for its answer.
    pub async fn query(
        &self,
        sender: &NodeSender,
        mut node: Node,
        timeout: Duration,
    ) -> Result<Node, IqError> {
        let id = match node.get_str("id") {
            Some(id) => id.into_owned(),
            None => {
                let id = self.next_id();
                node = node.attr("id", id.clone());
                id
            }
        };
        if node.get("to").is_none() {
            node = node.attr("to", Jid::server_jid());
        }
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .map_err(|_| IqError::Disconnected)?
            .insert(id.clone(), tx);
        let _guard = Waiter { tracker: self, id };
        sender
            .send(&node)
            .await
            .map_err(|_| IqError::Disconnected)?;
        let answer = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| IqError::Timeout(timeout))?
            .map_err(|_| IqError::Disconnected)?;
        check(answer)
    }
}

/// Turns a `type="error"` answer into [`IqError::Server`].
fn check(answer: Node) -> Result<Node, IqError> {
    if answer.get_str("type").as_deref() != Some("error") {
        return Ok(answer);
    }
    let err = answer.child("error");
    let code = err
        .and_then(|e| e.get_str("code"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = err
        .and_then(|e| e.get_str("text"))
        .map(|t| t.into_owned())
        .unwrap_or_default();
    Err(IqError::Server { code, text })
}
