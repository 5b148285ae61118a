//! Stanza ids in the forms the reference clients use, shared by the client and the simulator.

/// A random iq-id prefix `"<u16>.<u16>-"`; a counter or a random suffix completes each id
/// (Baileys `generateMessageTag`, whatsmeow `uniqueID`).
pub fn iq_prefix() -> String {
    format!("{}.{}-", rand::random::<u16>(), rand::random::<u16>())
}

/// A phone-style message id: 16 random bytes as upper-case hex.
pub fn phone_message_id() -> String {
    super::hex::encode(&rand::random::<[u8; 16]>()).to_uppercase()
}

/// A random UUID (version 4, RFC 9562), as the REST answers' `meta.operationId`.
pub fn uuid_v4() -> String {
    let mut b = rand::random::<[u8; 16]>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = super::hex::encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Crockford's base32 alphabet (ULID's).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The last ULID this process made: a later one in the same millisecond increments it, so ids
/// from one process sort in the order they were made.
static LAST_ULID: std::sync::Mutex<(u64, u128)> = std::sync::Mutex::new((0, 0));

/// A ULID (48-bit unix-ms time, 80 random bits; 26 Crockford base32 characters): unique, and
/// sortable by creation time — the webhook events' ids.
pub fn ulid() -> String {
    let now = super::clock::now_ms() & ((1 << 48) - 1);
    let value = {
        let mut last = LAST_ULID.lock().unwrap_or_else(|e| e.into_inner());
        let random = rand::random::<u128>() & ((1 << 80) - 1);
        let v = if now > last.0 {
            (u128::from(now) << 80) | random
        } else {
            // Same millisecond (or the clock stepped back): one more than the last, so the
            // order holds; 80 random bits leave room for any count a millisecond can make.
            last.1.wrapping_add(1)
        };
        *last = (now.max(last.0), v);
        v
    };
    ulid_text(value)
}

/// The 26-character form of a 128-bit ULID value.
fn ulid_text(v: u128) -> String {
    (0..26)
        .rev()
        .map(|i| char::from(CROCKFORD[((v >> (i * 5)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_reference_shapes() {
        let p = iq_prefix();
        let (a, b) = p.trim_end_matches('-').split_once('.').unwrap();
        assert!(a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(), "{p}");
        let u = uuid_v4();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            parts[2].starts_with('4') && "89ab".contains(&parts[3][..1]),
            "{u}"
        );
        let a = ulid();
        let b = ulid();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} then {b}");
        assert!(a.bytes().all(|c| CROCKFORD.contains(&c)));
        // The spec's largest value, and time in the leading ten characters.
        assert_eq!(ulid_text(u128::MAX), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(&ulid_text(1u128 << 80)[..10], "0000000001");
        let m = phone_message_id();
        assert_eq!(m.len(), 32);
        assert!(
            m.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
