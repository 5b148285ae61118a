//! A registration connection: show QR codes as the server sends refs, verify the phone's
//! pair-success, store the link before answering, and expect the 515 restart.

use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::events::{ConnState, Event, Linked};
use super::failure::stream_end;
use super::pair::{
    QrKeys, handle_pair_success, iq_result, pair_error_reply, parse_pair_device, qr_string,
};
use super::reconnect::Setback;
use super::run::{Outcome, Run};
use super::store::{Creds, CredsStore};
use crate::socket::{Incoming, NoiseSocket};

/// QR display times: 60 s for the first ref, 20 s for each later one (WhatsApp Web).
const QR_FIRST: Duration = Duration::from_secs(60);
const QR_NEXT: Duration = Duration::from_secs(20);

impl<S: CredsStore> Run<S> {
    /// A registration connection: show QR codes, handle pair-success, expect the 515 restart.
    pub(super) async fn pairing(&mut self, mut s: NoiseSocket, mut creds: Creds) -> Outcome {
        let mut refs: Vec<String> = Vec::new();
        let mut shown = 0usize;
        let qr_deadline = sleep(Duration::from_secs(3600));
        tokio::pin!(qr_deadline);
        let link = self.link.clone();
        loop {
            tokio::select! {
                _ = link.stop.requested() => return Outcome::Final(ConnState::Stopped),
                _ = &mut qr_deadline, if !refs.is_empty() => {
                    if shown >= refs.len() {
                        return Outcome::Final(ConnState::QrTimeout);
                    }
                    let valid_for = if shown == 0 { QR_FIRST } else { QR_NEXT };
                    let code = qr_string(&refs[shown], QrKeys {
                        noise_public: &creds.noise.public,
                        identity_public: &creds.identity.public,
                        adv_secret: &creds.adv_secret,
                    }, self.opts.profile.qr_platform());
                    shown += 1;
                    qr_deadline.as_mut().reset(Instant::now() + valid_for);
                    self.emit(Event::QrCode { code, valid_for }).await;
                }
                ev = s.incoming.recv() => {
                    let node = match ev {
                        Some(Incoming::Node(n)) => *n,
                        Some(Incoming::Malformed(_)) => continue,
                        Some(Incoming::Closed(e)) => {
                            let why = e.map(|e| e.to_string()).unwrap_or_else(|| "closed".into());
                            return Outcome::Retry(Setback::Transient, "connection_lost", why);
                        }
                        None => return Outcome::Retry(Setback::Transient, "connection_lost", "closed".into()),
                    };
                    if let Some((id, new_refs)) = parse_pair_device(&node) {
                        let _ = s.sender.send(&iq_result(&id)).await;
                        refs = new_refs;
                        shown = 0;
                        // Show the first code now.
                        qr_deadline.as_mut().reset(Instant::now());
                        continue;
                    }
                    if node.child("pair-success").is_some() {
                        match handle_pair_success(&node, &creds.identity, &creds.adv_secret) {
                            Ok((paired, reply)) => {
                                creds.me = Some(paired.me());
                                // Persist before answering: a crash after the reply must not lose the link.
                                if let Err(e) = self.store.save(&creds).await {
                                    let _ = s.sender.send(&pair_error_reply(&paired.iq_id, &super::pair::PairError::Malformed("store"))).await;
                                    return Outcome::Retry(Setback::Transient, "store_unavailable", e.to_string());
                                }
                                let _ = s.sender.send(&reply).await;
                                self.emit(Event::PairSuccess(Box::new(Linked {
                                    jid: paired.jid,
                                    lid: paired.lid,
                                    platform: paired.platform,
                                    business_name: paired.business_name,
                                }))).await;
                                refs.clear();
                            }
                            Err(e) => {
                                let id = node.get_str("id").map(|s| s.into_owned()).unwrap_or_default();
                                let _ = s.sender.send(&pair_error_reply(&id, &e)).await;
                                self.emit(Event::PairError { reason: e.to_string() }).await;
                            }
                        }
                        continue;
                    }
                    if let Some(o) = stream_end(&node) {
                        return o;
                    }
                }
            }
        }
    }
}
