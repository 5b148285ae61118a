//! Keepalive: ping the server at a random interval in the reference range and give up on the
//! connection when a ping goes unanswered past the deadline (whatsmeow `keepalive.go` timing).

use std::time::Duration;

use super::iq::{IqError, IqTracker};
use crate::binary::Node;
use crate::socket::NodeSender;

/// Keepalive timing (whatsmeow: ping every 20–30 s, 10 s to answer).
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Shortest interval between pings.
    pub min_interval: Duration,
    /// Longest interval between pings.
    pub max_interval: Duration,
    /// How long a ping may go unanswered.
    pub deadline: Duration,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            min_interval: Duration::from_secs(20),
            max_interval: Duration::from_secs(30),
            deadline: Duration::from_secs(10),
        }
    }
}

impl Keepalive {
    /// The wait before the next ping, `spread` in [0, 1) picking within the range.
    pub fn interval(&self, spread: f64) -> Duration {
        self.min_interval
            + self
                .max_interval
                .saturating_sub(self.min_interval)
                .mul_f64(spread)
    }

    /// Pings until one goes unanswered or the connection ends; returns why it stopped.
    pub async fn run(self, iq: &IqTracker, sender: &NodeSender) -> String {
        loop {
            tokio::time::sleep(self.interval(rand::random::<f64>())).await;
            // whatsmeow/whatsapp-rust send no child; any result with our id is the pong.
            let ping = Node::new("iq").attr("xmlns", "w:p").attr("type", "get");
            // Boxed: the query lives for one round trip, the loop for the whole connection
            // (inline, the idle loop's future was 752 bytes instead of ~150).
            match Box::pin(iq.query(sender, ping, self.deadline)).await {
                // An error answer still proves the server is there.
                Ok(_) | Err(IqError::Server { .. }) => {}
                Err(IqError::Timeout(d)) => return format!("keepalive ping unanswered for {d:?}"),
                Err(IqError::Disconnected) => return "socket closed".into(),
            }
        }
    }
}
