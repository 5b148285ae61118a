//! The simulated WhatsApp server: its in-memory state (phones, linked devices, published keys,
//! live connections) and the Rust API over it; it accepts WebSocket connections on loopback and
//! hands each to `conn.rs`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::iq::KeyBundle;
use super::pair::{PhoneAccount, ScannedQr, SimPairError, Tamper, parse_qr};
use super::phone::PhoneSignal;
use crate::binary::{Jid, Node};
use crate::signal::KeyPair;
use crate::socket::ServerIdentity;
use crate::util::clock::{Clock, SystemClock};

/// Errors of the simulator's control surface.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The QR did not parse.
    #[error(transparent)]
    Pair(#[from] SimPairError),
    /// No connection is showing that ref (expired, or never issued).
    #[error("no companion is showing this QR (expired or unknown ref)")]
    UnknownRef,
    /// The companion refused the pairing or went away.
    #[error("pairing failed: {0}")]
    PairingFailed(String),
}

/// A paired companion device.
#[derive(Debug, Clone)]
pub(super) struct Device {
    pub(super) jid: Jid,
    pub(super) lid: Jid,
    pub(super) noise_public: [u8; 32],
    pub(super) identity_public: [u8; 32],
}

/// A scan delivered to the connection showing the QR.
pub(super) struct Scan {
    pub(super) phone: PhoneAccount,
    pub(super) qr: ScannedQr,
    pub(super) done: oneshot::Sender<Result<Jid, SimError>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) phones: HashMap<String, PhoneAccount>,
    pub(super) devices: Vec<Device>,
    pub(super) showing: HashMap<String, mpsc::Sender<Scan>>,
    /// Logged-in connections by device JID string.
    pub(super) live: HashMap<String, mpsc::Sender<Control>>,
    /// Oldest WhatsApp Web version accepted (405 below it).
    pub(super) min_version: Option<[u32; 3]>,
    /// A defect for the next pair-success.
    pub(super) tamper: Option<Tamper>,
    /// One-time prekeys uploaded per device JID (id, public key); served to peers in part 2.
    pub(super) prekeys: HashMap<String, Vec<(u32, [u8; 32])>>,
    /// Registration id and signed prekey per device JID.
    pub(super) bundles: HashMap<String, KeyBundle>,
    /// Each phone's Signal state (its primary device), by number.
    pub(super) phone_signal: HashMap<String, PhoneSignal>,
    /// Companions that got the phone's first peer message.
    pub(super) greeted: HashSet<String>,
    /// Last companion device id given out per phone number.
    pub(super) last_device: HashMap<String, u16>,
    /// Receipts companions sent: (device JID, message id, receipt type).
    pub(super) receipts: Vec<(String, String, Option<String>)>,
    pub(super) accepted: u64,
}

/// A fault to inject (Rust API; the control endpoint maps onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the account's connections without a word.
    Drop,
    /// Stop (false) or resume (true) answering the account's pings.
    AnswerPings(bool),
    /// Send `<stream:error code>` (and a `<conflict type>` child when given), then close.
    StreamError {
        /// The code attribute (515, 503, 401…), if any.
        code: Option<u16>,
        /// `replaced` or `device_removed`, if any.
        conflict: Option<String>,
    },
    /// The phone unlinks its companion devices: they are forgotten and told `device_removed`.
    Unlink,
}

/// What a live connection is told to do.
#[derive(Debug, Clone)]
pub(super) enum Control {
    Close(Option<Node>),
    AnswerPings(bool),
}

pub(super) struct Shared {
    pub(super) identity: ServerIdentity,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) state: Mutex<State>,
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    ws_url: String,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Simulator {{ ws_url: {} }}", self.ws_url)
    }
}

impl Simulator {
    /// Starts listening on `listen` (port 0 picks a free port) with a fresh certificate chain.
    pub async fn start(listen: SocketAddr) -> Result<Simulator, SimError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let identity = ServerIdentity::generate(clock.now_unix(), 365 * 86_400);
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            identity,
            clock,
            state: Mutex::new(State::default()),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { super::conn::serve(s, tcp).await });
            }
        });
        Ok(Simulator {
            shared,
            ws_url: format!("ws://{addr}/ws/chat"),
        })
    }

    /// The WebSocket URL clients connect to.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The root public key clients must trust.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.shared.identity.root.public
    }

    /// Injects `fault` into the connections of the phone `number`'s companion devices; returns
    /// how many devices it reached.
    pub async fn fault(&self, number: &str, fault: Fault) -> usize {
        let (targets, unlinked): (Vec<mpsc::Sender<Control>>, usize) = {
            let Ok(mut st) = self.shared.state.lock() else {
                return 0;
            };
            let keys: Vec<String> = st
                .devices
                .iter()
                .filter(|d| d.jid.user == number)
                .map(|d| d.jid.to_string())
                .collect();
            let unlinked = if fault == Fault::Unlink {
                let before = st.devices.len();
                st.devices.retain(|d| d.jid.user != number);
                // The server forgets everything the removed devices published.
                for k in &keys {
                    st.bundles.remove(k);
                    st.prekeys.remove(k);
                    st.greeted.remove(k);
                }
                before - st.devices.len()
            } else {
                0
            };
            (
                keys.iter()
                    .filter_map(|k| st.live.get(k).cloned())
                    .collect(),
                unlinked,
            )
        };
        let control = match fault {
            Fault::Drop => Control::Close(None),
            Fault::AnswerPings(on) => Control::AnswerPings(on),
            Fault::StreamError { code, conflict } => {
                let mut n = Node::new("stream:error");
                if let Some(c) = code {
                    n = n.attr("code", c.to_string());
                }
                if let Some(t) = conflict {
                    n = n.children(vec![Node::new("conflict").attr("type", t)]);
                }
                Control::Close(Some(n))
            }
            Fault::Unlink => Control::Close(Some(
                Node::new("stream:error")
                    .attr("code", "401")
                    .children(vec![Node::new("conflict").attr("type", "device_removed")]),
            )),
        };
        let mut reached = 0;
        for t in targets {
            if t.send(control.clone()).await.is_ok() {
                reached += 1;
            }
        }
        reached.max(unlinked)
    }

    /// Refuses logins and registrations below `version` with 405 (None accepts all).
    pub fn set_min_version(&self, version: Option<[u32; 3]>) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.min_version = version;
        }
    }

    /// Makes the next pair-success defective (companions must refuse it).
    pub fn tamper_next_pair_success(&self, tamper: Tamper) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.tamper = Some(tamper);
        }
    }

    /// WebSocket connections that completed the Noise handshake so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.state.lock().map(|st| st.accepted).unwrap_or(0)
    }

    /// One-time prekeys the device `jid` has uploaded.
    pub fn uploaded_pre_keys(&self, jid: &Jid) -> usize {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|st| st.prekeys.get(&jid.to_string()).map(Vec::len))
            .unwrap_or(0)
    }

    /// Receipts the device `jid` sent: (message id, receipt type).
    pub fn receipts(&self, jid: &Jid) -> Vec<(String, Option<String>)> {
        let key = jid.to_string();
        self.shared
            .state
            .lock()
            .map(|st| {
                st.receipts
                    .iter()
                    .filter(|(k, _, _)| *k == key)
                    .map(|(_, id, t)| (id.clone(), t.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Companion devices linked to the phone `number`.
    pub fn linked_devices(&self, number: &str) -> Vec<Jid> {
        self.shared
            .state
            .lock()
            .map(|st| {
                st.devices
                    .iter()
                    .filter(|d| d.jid.user == number)
                    .map(|d| d.jid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A phone with `number` scans `qr` (the phone is created on first use). Resolves once the
    /// companion has answered with a valid device signature: returns the new device JID.
    pub async fn scan(
        &self,
        number: &str,
        qr: &str,
        push_name: Option<&str>,
        platform: Option<&str>,
    ) -> Result<Jid, SimError> {
        let scanned = parse_qr(qr)?;
        let (phone, tx) = {
            let mut st = self.shared.state.lock().map_err(|_| SimError::UnknownRef)?;
            let tx = st
                .showing
                .get(&scanned.r#ref)
                .cloned()
                .ok_or(SimError::UnknownRef)?;
            let phone = st
                .phones
                .entry(number.to_owned())
                .or_insert_with(|| PhoneAccount {
                    number: number.to_owned(),
                    lid: format!("{}", 100_000_000_000_000u64 + rand::random::<u32>() as u64),
                    identity: KeyPair::generate(),
                    platform: platform.unwrap_or("android").to_owned(),
                    push_name: None,
                    business_name: None,
                });
            // The user may have renamed themselves since the last scan.
            if let Some(name) = push_name {
                phone.push_name = Some(name.to_owned());
            }
            (phone.clone(), tx)
        };
        let (done, rx) = oneshot::channel();
        tx.send(Scan {
            phone,
            qr: scanned,
            done,
        })
        .await
        .map_err(|_| SimError::UnknownRef)?;
        rx.await
            .map_err(|_| SimError::PairingFailed("connection closed".into()))?
    }
}
