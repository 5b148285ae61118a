//! The simulated WhatsApp server's state, and nothing that acts on it: phones and their
//! simulated devices, linked companions and what they published, live connections and queues,
//! groups, the stanza log, the faults in force. Every per-device and per-phone collection is
//! bounded, so a long-running `simulate` stays flat. Everything else in `sim/` sits above this
//! file (conn → session → accept → route/groups → deliver → server state), never below it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::appstate::AppState;
use super::error::SimError;
use super::gallery::Gallery;
use super::inbox::Inbox;
use super::iq::KeyBundle;
use super::pair::{PhoneAccount, ScannedQr, Tamper};
use super::phone::SimPeer;
use super::stanza_log::StanzaLog;
use crate::binary::{Jid, Node, Server};
use crate::signal::KeyPair;
use crate::socket::ServerIdentity;
use crate::stanza::group::AddressingMode;
use crate::util::clock::Clock;

/// Longest phone number (E.164): it also keeps every number within a u64, which logins need.
pub const MAX_NUMBER_DIGITS: usize = 15;

/// Whether `number` is a phone number a simulated user may have.
pub fn valid_number(number: &str) -> bool {
    (1..=MAX_NUMBER_DIGITS).contains(&number.len()) && number.bytes().all(|c| c.is_ascii_digit())
}

/// One-time prekeys the server holds per device; past it the oldest are dropped (a device
/// uploads 812 at first and 50 per refill, so only a misbehaving client reaches it).
pub const MAX_HELD_PREKEYS: usize = 2048;

/// Companion device ids a phone can hand out over its life: ids only grow, and the AD-JID wire
/// form carries a device in one byte.
pub const MAX_DEVICE_ID: u16 = u8::MAX as u16;

/// Registrations showing QR refs at once; past it a new registration is refused with 503.
pub const MAX_REGISTRATIONS: usize = 1024;

/// Noise handshakes in progress at once; further connections wait their turn (within the
/// handshake timeout), so a flood of unauthenticated sockets cannot pin unbounded memory.
pub const MAX_HANDSHAKES: usize = 256;

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

/// A simulated user: the phone's account and Signal state (device 0), its simulated companion
/// devices, the last companion id it handed out (ids only grow: an unlinked id is never
/// reused), what its devices received, and its behaviour settings.
pub(super) struct Phone {
    pub(super) account: PhoneAccount,
    pub(super) signal: Arc<SimPeer>,
    pub(super) last_device: u16,
    /// Simulated companions (real Signal peers with their own identities).
    pub(super) sims: Vec<Arc<SimPeer>>,
    /// What its devices received, as its app shows it.
    pub(super) inbox: Inbox,
    /// Answer every text with the same text.
    pub(super) echo: bool,
    /// Its devices send no receipts.
    pub(super) withhold_receipts: bool,
    /// The next message to one of its devices arrives with a broken MAC.
    pub(super) corrupt_next: u32,
    /// What it sent lately (for retry receipts): id, chat, message.
    pub(super) sent: VecDeque<(String, Jid, crate::proto::wa::Message)>,
    /// Retry receipts its devices sent per (sender device, id).
    pub(super) retries: HashMap<(String, String), u32>,
    /// The account is not migrated to LID 1:1 chats: its LID-addressed DMs are refused (400).
    pub(super) lid_unmigrated: bool,
    /// Ids of its messages someone reported read.
    pub(super) read: HashSet<String>,
    /// First messages to strangers need their privacy token (else 463), as WhatsApp
    /// restricts accounts that reach out too much.
    pub(super) reach_out_lock: bool,
    /// When the reach-out lock ends (unix seconds), while it is on.
    pub(super) reach_out_until: u64,
    /// (group id, device) pairs its phone sent its current sender key to.
    pub(super) group_keys_sent: HashSet<(String, String)>,
    /// Group receipts for its messages are sent aggregated.
    pub(super) aggregate_receipts: bool,
    /// The media it sent or received and still has (for media retries).
    pub(super) gallery: Gallery,
    /// Its app state: the server's collections and the phone's keys and plaintext.
    pub(super) app_state: AppState,
    /// Its chat history (sent to a newly linked companion, and on request).
    pub(super) history: super::history::SimHistory,
    /// The account's NCT salt (keys the cstokens its devices send): random per account, as
    /// no source establishes its length (CLIENT-FEATURES Appendix C.1); 32 bytes here.
    pub(super) nct_salt: Vec<u8>,
    /// Sends of its devices to cold users need a valid cstoken or tctoken (else 463), as
    /// WhatsApp enforces since 2026 (CLIENT-FEATURES §1.4).
    pub(super) require_cstoken: bool,
    /// Its new-chat message capping, once set from the control API.
    pub(super) capping: Option<crate::stanza::mex::NewChatCapping>,
    /// Users it started a new chat with in the current capping cycle (counted once each).
    pub(super) new_chats: HashSet<String>,
}

impl Phone {
    /// The NCT salt cstokens to this account's sends are checked against: what its app state
    /// holds once seeded (an `nct_salt_sync` may have changed or removed it), else the salt
    /// it was made with (which seeds that app state and rides the history bootstrap).
    pub(super) fn current_nct_salt(&self) -> Option<&[u8]> {
        if self.app_state.seeded() {
            self.app_state.nct_salt()
        } else {
            Some(&self.nct_salt)
        }
    }
}

/// Devices a simulated user starts with (the phone and one companion).
pub const DEFAULT_DEVICES: usize = 2;
/// Most devices a simulated user may have.
pub const MAX_SIM_DEVICES: usize = 16;
/// Sent messages kept per simulated user for retries.
pub(super) const SENT_KEPT: usize = 256;

impl Phone {
    /// Sets how many simulated devices the user has (the phone counts; 1..=[`MAX_SIM_DEVICES`]):
    /// new companions get fresh ids and identities, removed ones are forgotten.
    pub(super) fn set_devices(&mut self, count: usize) -> bool {
        if !(1..=MAX_SIM_DEVICES).contains(&count) {
            return false;
        }
        while self.sims.len() + 1 > count {
            self.sims.pop();
        }
        while self.sims.len() + 1 < count {
            let Some(id) = self.next_device() else {
                return false;
            };
            let jid =
                Jid::with_device(self.account.number.clone(), id, crate::binary::Server::User);
            self.sims
                .push(Arc::new(SimPeer::new(jid, KeyPair::generate())));
        }
        true
    }

    /// The simulated device with id `device` (0 = the phone).
    pub(super) fn sim_device(&self, device: u16) -> Option<Arc<SimPeer>> {
        if device == 0 {
            return Some(self.signal.clone());
        }
        self.sims.iter().find(|p| p.jid.device == device).cloned()
    }

    /// Every simulated device, the phone first.
    pub(super) fn sim_devices(&self) -> Vec<Arc<SimPeer>> {
        std::iter::once(self.signal.clone())
            .chain(self.sims.iter().cloned())
            .collect()
    }

    /// The next companion device id (ids and key indexes only grow: an unlinked id is never
    /// reused); None once [`MAX_DEVICE_ID`] was handed out.
    pub(super) fn next_device(&mut self) -> Option<u16> {
        if self.last_device >= MAX_DEVICE_ID {
            return None;
        }
        self.last_device += 1;
        Some(self.last_device)
    }
}

/// Privacy-token issue iqs kept in the log.
pub(super) const ISSUES_KEPT: usize = 1024;

/// Receipts kept per companion (the simulator may run for days).
const RECEIPTS_KEPT: usize = 1024;

/// One-time prekeys a device uploaded, served oldest first; a re-uploaded id replaces its key.
/// Every operation is logarithmic, so no upload is quadratic under the state lock.
#[derive(Default)]
pub(super) struct HeldPreKeys {
    /// Upload order → (id, public key).
    by_seq: BTreeMap<u64, (u32, [u8; 32])>,
    /// id → upload order.
    seq_of: HashMap<u32, u64>,
    next_seq: u64,
}

impl HeldPreKeys {
    pub(super) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_seq.values().map(|(id, _)| *id)
    }

    /// Adds uploaded keys, dropping the oldest beyond [`MAX_HELD_PREKEYS`].
    pub(super) fn add(&mut self, keys: impl IntoIterator<Item = (u32, [u8; 32])>) {
        for (id, key) in keys {
            if let Some(old) = self.seq_of.remove(&id) {
                self.by_seq.remove(&old);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_seq.insert(seq, (id, key));
            self.seq_of.insert(id, seq);
            if self.by_seq.len() > MAX_HELD_PREKEYS {
                self.take();
            }
        }
    }

    /// Serves (and forgets) the oldest key, as the server does when it hands out a bundle.
    pub(super) fn take(&mut self) -> Option<(u32, [u8; 32])> {
        let (_, (id, key)) = self.by_seq.pop_first()?;
        self.seq_of.remove(&id);
        Some((id, key))
    }
}

/// A linked companion and everything it published; unlinking drops it whole.
pub(super) struct Companion {
    pub(super) device: Device,
    /// Registration id and signed prekey, once uploaded.
    pub(super) bundle: Option<KeyBundle>,
    /// One-time prekeys held; served to peers.
    pub(super) prekeys: HeldPreKeys,
    /// Whether the phone has sent its first peer messages.
    pub(super) greeted: bool,
    /// The latest receipts it sent: (message id, receipt type).
    pub(super) receipts: VecDeque<(String, Option<String>)>,
    /// The latest history-sync notifications the phone sent it, oldest first.
    pub(super) history_sent: VecDeque<HistorySent>,
}

/// A history-sync notification the phone sent a companion (what tests match its `hist_sync`
/// receipt against).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistorySent {
    /// The id of the message that carried it.
    pub id: String,
    /// Its `syncType` (0 initial bootstrap, 2 full, 3 recent, 6 on demand).
    pub sync_type: Option<i32>,
    /// Its `chunkOrder`.
    pub chunk: Option<u32>,
}

impl Companion {
    pub(super) fn new(device: Device) -> Companion {
        Companion {
            device,
            bundle: None,
            prekeys: HeldPreKeys::default(),
            greeted: false,
            receipts: VecDeque::new(),
            history_sent: VecDeque::new(),
        }
    }

    /// Records a history notification sent to it (message `id`), forgetting the oldest
    /// beyond [`RECEIPTS_KEPT`].
    pub(super) fn sent_history(&mut self, id: String, message: &crate::proto::wa::Message) {
        let Some(n) = message
            .protocol_message
            .as_ref()
            .and_then(|p| p.history_sync_notification.as_ref())
        else {
            return;
        };
        if self.history_sent.len() == RECEIPTS_KEPT {
            self.history_sent.pop_front();
        }
        self.history_sent.push_back(HistorySent {
            id,
            sync_type: n.sync_type,
            chunk: n.chunk_order,
        });
    }

    /// Records a receipt, forgetting the oldest beyond [`RECEIPTS_KEPT`].
    pub(super) fn receipt(&mut self, id: String, kind: Option<String>) {
        if self.receipts.len() == RECEIPTS_KEPT {
            self.receipts.pop_front();
        }
        self.receipts.push_back((id, kind));
    }
}

#[derive(Default)]
pub(super) struct State {
    /// Phones by number.
    pub(super) phones: HashMap<String, Phone>,
    /// Phone numbers by LID user (LIDs are unique).
    pub(super) lids: HashMap<String, String>,
    /// Registrations currently showing refs.
    pub(super) registrations: usize,
    /// Linked companions by device JID string.
    pub(super) companions: HashMap<String, Companion>,
    pub(super) showing: HashMap<String, mpsc::Sender<Scan>>,
    /// Logged-in connections by device JID string.
    pub(super) live: HashMap<String, mpsc::UnboundedSender<Control>>,
    /// Devices whose offline queue was flushed on this connection: new stanzas go straight
    /// to them (and stay queued until answered).
    pub(super) online: HashSet<String>,
    /// Stanzas per real device, kept until it sends a receipt or ack for them.
    pub(super) queues: HashMap<String, VecDeque<Queued>>,
    /// Senders (phone numbers) whose messages the server holds unacked.
    pub(super) withhold_acks: HashSet<String>,
    /// Held messages: (sender device, stanza).
    pub(super) held: Vec<(Device, Node)>,
    /// The message stanzas real devices transmitted and the server answered.
    pub(super) log: StanzaLog,
    /// Privacy tokens: (issuer number, holder number) → token.
    pub(super) tokens: HashMap<(String, String), Vec<u8>>,
    /// Privacy-token issue iqs real devices sent, oldest first: (issuer number, holder number,
    /// the iq's `t`); the last [`ISSUES_KEPT`].
    pub(super) token_issues: VecDeque<(String, String, u64)>,
    /// Groups by id (the user part of their JID).
    pub(super) groups: HashMap<String, Group>,
    /// Former members' attempts to read group messages sent after they left.
    pub(super) eavesdrops: VecDeque<Eavesdrop>,
    /// Oldest WhatsApp Web version accepted (405 below it).
    pub(super) min_version: Option<[u32; 3]>,
    /// A defect for the next pair-success.
    pub(super) tamper: Option<Tamper>,
    pub(super) accepted: u64,
}

impl State {
    /// Shows a registration's refs unless [`MAX_REGISTRATIONS`] are already showing.
    pub(super) fn admit_registration(
        &mut self,
        refs: &[String],
        scans: &mpsc::Sender<Scan>,
    ) -> bool {
        if self.registrations >= MAX_REGISTRATIONS {
            return false;
        }
        self.registrations += 1;
        for r in refs {
            self.showing.insert(r.clone(), scans.clone());
        }
        true
    }

    /// The phone `number`, created on first use with a fresh identity and a unique LID.
    pub(super) fn phone(&mut self, number: &str, platform: Option<&str>) -> &mut Phone {
        if !self.phones.contains_key(number) {
            let lid = loop {
                // 15-digit LIDs, as WhatsApp's look; drawn again on the rare collision.
                let lid = (100_000_000_000_000u64 + rand::random::<u64>() % 900_000_000_000_000)
                    .to_string();
                if !self.lids.contains_key(&lid) && !self.phones.contains_key(&lid) {
                    break lid;
                }
            };
            self.lids.insert(lid.clone(), number.to_owned());
            let account = PhoneAccount {
                number: number.to_owned(),
                lid,
                identity: KeyPair::generate(),
                platform: platform.unwrap_or("android").to_owned(),
                push_name: None,
                business_name: None,
            };
            let mut phone = Phone {
                signal: Arc::new(SimPeer::phone(&account)),
                account,
                last_device: 0,
                sims: Vec::new(),
                inbox: Inbox::default(),
                echo: false,
                withhold_receipts: false,
                corrupt_next: 0,
                sent: VecDeque::new(),
                retries: HashMap::new(),
                reach_out_lock: false,
                reach_out_until: 0,
                read: HashSet::new(),
                lid_unmigrated: false,
                group_keys_sent: HashSet::new(),
                aggregate_receipts: false,
                gallery: Gallery::default(),
                app_state: AppState::default(),
                history: super::history::SimHistory::default(),
                nct_salt: rand::random::<[u8; 32]>().to_vec(),
                require_cstoken: false,
                capping: None,
                new_chats: HashSet::new(),
            };
            // Users have a phone and one more device unless told otherwise.
            phone.set_devices(DEFAULT_DEVICES);
            self.phones.insert(number.to_owned(), phone);
        }
        self.phones
            .get_mut(number)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// The phone whose number or LID user is `user`.
    #[cfg(test)]
    pub(super) fn phone_by_user(&self, user: &str) -> Option<&Phone> {
        self.phones
            .get(user)
            .or_else(|| self.phones.get(self.lids.get(user)?))
    }

    /// The companion JIDs of phone `number`, by device id.
    pub(super) fn linked_devices(&self, number: &str) -> Vec<Jid> {
        let mut jids: Vec<Jid> = self
            .companions
            .values()
            .filter(|c| c.device.jid.user == number)
            .map(|c| c.device.jid.clone())
            .collect();
        jids.sort_by_key(|j| j.device);
        jids
    }
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
    /// The next message to one of the user's devices (a resend answering a retry receipt
    /// included) arrives with a broken MAC; asked n times, the next n do.
    CorruptNext,
    /// The user's devices stop (true) or resume (false) sending receipts.
    WithholdReceipts(bool),
    /// The server holds the user's messages unacked and undelivered (true); lifting it (false)
    /// accepts, routes and acks each held stanza (the acks go to the device's connection of
    /// the moment, if any).
    WithholdAcks(bool),
    /// The user's first messages to strangers need a privacy token (true), or not (false).
    ReachOutLock(bool),
    /// The account is not LID-migrated (true): its LID-addressed DMs get `ack error="400"`.
    LidUnmigrated(bool),
    /// Group receipts for the account's messages arrive aggregated (true): `<receipt
    /// from=<group>><participants key=<id>><user jid t/>…`, as WhatsApp may send them.
    AggregateReceipts(bool),
    /// The user's phone has deleted its media files (true): it answers media retries for them
    /// with `NOT_FOUND` (CLIENT-FEATURES §2.6), as a phone whose gallery lost the file.
    MediaDeleted(bool),
    /// Sends of the account's devices to cold users (who never gave it a tctoken nor wrote to
    /// it) need a valid cstoken or tctoken (true), else `ack error="463"`.
    RequireCsToken(bool),
}

/// A simulated account's reach-out time-lock, as WhatsApp's `w:mex` answers state it.
pub(super) fn timelock(phone: &Phone) -> crate::stanza::mex::ReachoutTimelock {
    crate::stanza::mex::ReachoutTimelock {
        active: phone.reach_out_lock,
        ends_at: phone.reach_out_lock.then_some(phone.reach_out_until),
        enforcement: crate::stanza::mex::DEFAULT_ENFORCEMENT.into(),
    }
}

/// No time-lock.
pub(super) fn timelock_off() -> crate::stanza::mex::ReachoutTimelock {
    crate::stanza::mex::ReachoutTimelock {
        active: false,
        ends_at: None,
        enforcement: crate::stanza::mex::DEFAULT_ENFORCEMENT.into(),
    }
}

/// What a live connection is told to do.
#[derive(Debug, Clone)]
pub(super) enum Control {
    Close(Option<Node>),
    AnswerPings(bool),
    /// Send this stanza.
    Deliver(Box<Node>),
}

/// Everything a connection, the delivery task and the Rust API share.
pub(super) struct Shared {
    pub(super) identity: ServerIdentity,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) state: Mutex<State>,
    /// Work for simulated devices, done in order by a background task: the server acks a
    /// message on acceptance, not once every device decrypted it.
    pub(super) deliveries: mpsc::Sender<Box<dyn Work>>,
    /// The media CDN: `media_conn` auth, stored blobs, CDN faults.
    pub(super) cdn: Arc<super::cdn::Cdn>,
}

/// What a simulated device does with a stanza that reached it, after the server acked it
/// (`route.rs` and `groups.rs` each define theirs; the delivery task runs them in order, as
/// they share pairwise sessions).
pub(super) trait Work: Send {
    /// Does it.
    fn run<'a>(
        self: Box<Self>,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A stanza waiting for a real device's answer.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) id: String,
    pub(super) node: Node,
}

/// A group on the server.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) id: String,
    pub(super) subject: String,
    pub(super) subject_owner: String,
    pub(super) subject_t: u64,
    pub(super) creator: String,
    pub(super) creation: u64,
    pub(super) mode: AddressingMode,
    /// Members by phone number, with `admin`/`superadmin`.
    pub(super) members: Vec<(String, Option<&'static str>)>,
    /// Recent former members (phone numbers).
    pub(super) former: VecDeque<String>,
}

impl Group {
    pub(super) fn is_member(&self, number: &str) -> bool {
        self.members.iter().any(|(n, _)| n == number)
    }

    pub(super) fn is_admin(&self, number: &str) -> bool {
        self.members.iter().any(|(n, a)| n == number && a.is_some())
    }

    pub(super) fn jid(&self) -> Jid {
        Jid::new(self.id.clone(), Server::Group)
    }
}

/// A former member's device tried to read a group message sent after it left.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Eavesdrop {
    /// The group JID.
    pub group: String,
    /// The message id.
    pub id: String,
    /// The former member's device.
    pub device: String,
    /// Whether it could read it (it must not).
    pub read: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_prekeys_replace_by_id_serve_oldest_first_and_stay_capped() {
        let mut h = HeldPreKeys::default();
        h.add((1..=3).map(|i| (i, [i as u8; 32])));
        // A re-uploaded id replaces its key and moves to the back.
        h.add([(1, [9; 32])]);
        assert_eq!(h.len(), 3);
        assert_eq!(h.ids().collect::<Vec<_>>(), [2, 3, 1]);
        assert_eq!(h.take(), Some((2, [2; 32])));
        // An upload far past the cap keeps only the newest MAX_HELD_PREKEYS.
        let n = (MAX_HELD_PREKEYS * 3) as u32;
        h.add((100..100 + n).map(|i| (i, [0; 32])));
        assert_eq!(h.len(), MAX_HELD_PREKEYS);
        assert_eq!(
            h.seq_of.len(),
            MAX_HELD_PREKEYS,
            "both indexes shrink together"
        );
        assert_eq!(
            h.take().map(|k| k.0),
            Some(100 + n - MAX_HELD_PREKEYS as u32)
        );
    }

    #[test]
    fn device_ids_stop_at_the_last_one_instead_of_wrapping() {
        let mut st = State::default();
        let phone = st.phone("15550000001", None);
        // The user's simulated companion took the first id.
        assert_eq!(phone.sims.len(), DEFAULT_DEVICES - 1);
        let first = phone.last_device;
        assert_eq!(phone.next_device(), Some(first + 1));
        // A phone that handed out ids for years (or a u16 near its end, before the cap).
        phone.last_device = MAX_DEVICE_ID - 1;
        assert_eq!(phone.next_device(), Some(MAX_DEVICE_ID));
        assert_eq!(phone.next_device(), None);
        phone.last_device = u16::MAX;
        assert_eq!(phone.next_device(), None, "no overflow");
    }

    #[test]
    fn registrations_past_the_cap_are_refused_and_show_no_refs() {
        let mut st = State::default();
        let (tx, _rx) = mpsc::channel(1);
        for i in 0..MAX_REGISTRATIONS {
            assert!(st.admit_registration(&[format!("ref-{i}")], &tx));
        }
        assert!(!st.admit_registration(&["ref-over".into()], &tx));
        assert_eq!(st.showing.len(), MAX_REGISTRATIONS);
        assert!(!st.showing.contains_key("ref-over"));
    }

    #[test]
    fn phones_get_unique_lids_that_are_no_phone_number() {
        let mut st = State::default();
        let mut lids = HashSet::new();
        for i in 0..2000 {
            let number = format!("1555{i:07}");
            let lid = st.phone(&number, None).account.lid.clone();
            assert_eq!(lid.len(), 15, "{lid}");
            assert!(!st.phones.contains_key(&lid));
            assert!(lids.insert(lid.clone()), "LID {lid} handed out twice");
            assert_eq!(st.phone_by_user(&lid).unwrap().account.number, number);
        }
        // The same number is the same phone (and keeps its LID).
        let again = st.phone("15550000007", None).account.lid.clone();
        assert_eq!(
            st.phone_by_user(&again).unwrap().account.number,
            "15550000007"
        );
        assert_eq!(st.lids.len(), 2000);
    }
}
