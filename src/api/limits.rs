//! Rate limits per subaccount and endpoint, per minute, as the guide lists them (connect 20,
//! status 100, send 200, messages 100, connections 50, disconnect 20): a fixed one-minute
//! window per (subaccount, endpoint); past its count a request gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limited endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST …/connect`.
    Connect,
    /// `GET …/status`.
    Status,
    /// `POST …/send`.
    Send,
    /// `GET …/messages`.
    Messages,
    /// `GET …/connections`.
    Connections,
    /// `POST …/disconnect`.
    Disconnect,
    /// `DELETE /api/whatsapp/:subaccountId/:agentId` (limited like disconnect).
    Remove,
    /// `GET …/activities` (limited like history).
    Activities,
    /// The webhook endpoints (limited like connections).
    Webhook,
}

impl Endpoint {
    /// Requests per minute per subaccount (the guide's table).
    pub fn per_minute(self) -> u32 {
        match self {
            Endpoint::Connect | Endpoint::Disconnect | Endpoint::Remove => 20,
            Endpoint::Status | Endpoint::Messages | Endpoint::Activities => 100,
            Endpoint::Send => 200,
            Endpoint::Connections | Endpoint::Webhook => 50,
        }
    }
}

/// Windows kept at most; beyond, expired ones are dropped (and, if none expired, all).
const MAX_WINDOWS: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(60);

/// The counters.
#[derive(Debug, Default)]
pub struct Limits {
    windows: Mutex<HashMap<(String, Endpoint), (Instant, u32)>>,
    /// Subaccounts exempt from limits (load tests).
    exempt: Vec<String>,
}

impl Limits {
    /// Limits for everyone but `exempt`.
    pub fn new(exempt: Vec<String>) -> Limits {
        Limits {
            windows: Mutex::new(HashMap::new()),
            exempt,
        }
    }

    /// Counts one request; Err(seconds to wait) past the limit.
    pub fn check(&self, subaccount: &str, endpoint: Endpoint) -> Result<(), u64> {
        self.check_at(subaccount, endpoint, Instant::now())
    }

    fn check_at(&self, subaccount: &str, endpoint: Endpoint, now: Instant) -> Result<(), u64> {
        if self.exempt.iter().any(|e| e == subaccount) {
            return Ok(());
        }
        let Ok(mut w) = self.windows.lock() else {
            return Ok(());
        };
        if w.len() >= MAX_WINDOWS {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if w.len() >= MAX_WINDOWS {
                w.clear();
            }
        }
        let entry = w
            .entry((subaccount.to_owned(), endpoint))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= endpoint.per_minute() {
            let left = WINDOW.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_21st_connect_in_a_minute_waits_and_the_next_minute_is_fresh() {
        let l = Limits::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(l.check_at("a", Endpoint::Connect, t0), Ok(()));
        }
        let wait = l.check_at("a", Endpoint::Connect, t0 + Duration::from_secs(10));
        assert_eq!(wait, Err(50));
        // Other subaccounts and endpoints have their own windows.
        assert_eq!(l.check_at("b", Endpoint::Connect, t0), Ok(()));
        assert_eq!(l.check_at("a", Endpoint::Status, t0), Ok(()));
        assert_eq!(l.check_at("a", Endpoint::Connect, t0 + WINDOW), Ok(()));
        let exempt = Limits::new(vec!["load".into()]);
        for _ in 0..500 {
            assert_eq!(exempt.check_at("load", Endpoint::Connect, t0), Ok(()));
        }
    }
}
