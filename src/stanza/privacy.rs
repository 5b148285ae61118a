//! Privacy tokens on 1:1 sends, as both ends compute them (CLIENT-FEATURES §1): the cstoken
//! (HMAC of the recipient's LID under the account's NCT salt), who may carry one, and the
//! tctoken's 7-day buckets (expiry of a held token, and when ours is due again). The client
//! attaches and issues them; the simulator checks them. No IO, no clock: callers pass `now`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::binary::{Jid, Server};

/// One tctoken bucket: 7 days (whatsmeow `tcTokenBucketDuration`; whatsapp-rust
/// `TC_TOKEN_BUCKET_DURATION`, WA Web AB prop `tctoken_duration`).
pub const TC_BUCKET_SECS: u64 = 604_800;
/// Buckets a held token stays valid over, the current one included: about 28 days
/// (whatsmeow `tcTokenNumBuckets`; whatsapp-rust `TC_TOKEN_NUM_BUCKETS`, AB prop
/// `tctoken_num_buckets`). Both references default to 4; we take no AB props, so it is fixed.
pub const TC_NUM_BUCKETS: u64 = 4;

/// `HMAC-SHA256(key = salt, data = "<lid-user>@lid")`: the full 32 bytes (whatsmeow
/// `generateCsToken`; whatsapp-rust `compute_cs_token`). The LID carries no device or agent.
pub fn cs_token(salt: &[u8], lid_user: &str) -> [u8; 32] {
    // HMAC takes a key of any length (no source validates the salt's: Appendix C.1).
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!());
    m.update(lid_user.as_bytes());
    m.update(b"@lid");
    m.finalize().into_bytes().into()
}

/// The PSA account (WhatsApp's own announcements), `0@s.whatsapp.net`.
pub const PSA_USER: &str = "0";

/// Whether `jid` is a bot: the `bot` server, or a phone-number user matching
/// `^1313555\d{4}$` or `^131655500\d{2}$` on device 0 (whatsmeow `types/jid.go` `IsBot`).
pub fn is_bot(jid: &Jid) -> bool {
    if jid.server == Server::Bot {
        return true;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    jid.server == Server::User
        && jid.device == 0
        && ((jid.user.len() == 11 && jid.user.starts_with("1313555") && digits(&jid.user[7..]))
            || (jid.user.len() == 11
                && jid.user.starts_with("131655500")
                && digits(&jid.user[9..])))
}

/// Whether a 1:1 send to `to` may carry a privacy token at all: a user on `s.whatsapp.net` or
/// `lid` (not a group, broadcast or status, newsletter, hosted, interop or bot server), not the
/// PSA and not a bot (whatsmeow `shouldSendCsToken` / `shouldSendTCTokenInChatAction`). Our own
/// account is the caller's to exclude (whatsapp-rust does; whatsmeow does not — we follow
/// whatsapp-rust, CLIENT-FEATURES Appendix A).
pub fn token_recipient(to: &Jid) -> bool {
    let to = to.to_non_ad();
    matches!(to.server, Server::User | Server::Lid)
        && !to.user.is_empty()
        && (to.server != Server::User || to.user != PSA_USER)
        && !is_bot(&to)
}

/// The bucket of unix time `t`.
pub fn bucket(t: u64) -> u64 {
    t / TC_BUCKET_SECS
}

/// Whether a token received at `t` is expired at `now`: older than the start of the oldest of
/// the [`TC_NUM_BUCKETS`] buckets ending with the current one (whatsmeow `isTCTokenExpired`,
/// WA Web `tokenExpirationCutoff` per whatsapp-rust). A zero time is expired.
pub fn tc_token_expired(t: u64, now: u64) -> bool {
    let cutoff = bucket(now).saturating_sub(TC_NUM_BUCKETS - 1) * TC_BUCKET_SECS;
    t == 0 || t < cutoff
}

/// Whether ours is due again: never issued, or `now` is in a later bucket than the last issue
/// (whatsmeow `shouldSendNewTCToken`; whatsapp-rust `should_send_new_tc_token_at`).
pub fn tc_token_due(last_issued: Option<u64>, now: u64) -> bool {
    last_issued.is_none_or(|t| bucket(now) > bucket(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cs_token_matches_the_appendix_b_check_value() {
        // CLIENT-FEATURES Appendix B (= whatsapp-rust `test_compute_cs_token_known_answer`).
        assert_eq!(
            crate::util::hex::encode(&cs_token(b"whatsapp_nct_salt_example", "alice")),
            "7c6afc325785ac3c4f571e648a3bb822f0e2e49434812ed2809aea2e7043b576"
        );
    }

    #[test]
    fn users_carry_tokens_groups_psa_and_bots_do_not() {
        let j = |s: &str| s.parse::<Jid>().unwrap();
        for yes in [
            "15550001111@s.whatsapp.net",
            "123456789012345@lid",
            "15550001111:3@s.whatsapp.net",
        ] {
            assert!(token_recipient(&j(yes)), "{yes}");
        }
        for no in [
            "120363000000000000@g.us",
            "status@broadcast",
            "1234@newsletter",
            "0@s.whatsapp.net",
            "13135551234@s.whatsapp.net",
            "13165550012@s.whatsapp.net",
            "867051314767696@bot",
        ] {
            assert!(!token_recipient(&j(no)), "{no}");
        }
        // The bot number rule is exact: other lengths are people.
        assert!(token_recipient(&j("131355512345@s.whatsapp.net")));
        assert!(token_recipient(&j("1316555001@s.whatsapp.net")));
    }

    #[test]
    fn buckets_bound_validity_and_issuing() {
        let week = TC_BUCKET_SECS;
        let now = 100 * week + 10;
        // Valid through the start of bucket 97 (4 buckets: 97, 98, 99, 100).
        assert!(!tc_token_expired(97 * week, now));
        assert!(tc_token_expired(97 * week - 1, now));
        assert!(tc_token_expired(0, now));
        // Due when never issued or in an earlier bucket; not again within the same one.
        assert!(tc_token_due(None, now));
        assert!(!tc_token_due(Some(100 * week), now));
        assert!(tc_token_due(Some(100 * week - 1), now));
    }
}
