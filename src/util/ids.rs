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
        let m = phone_message_id();
        assert_eq!(m.len(), 32);
        assert!(
            m.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
