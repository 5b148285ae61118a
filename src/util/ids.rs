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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_reference_shapes() {
        let p = iq_prefix();
        let (a, b) = p.trim_end_matches('-').split_once('.').unwrap();
        assert!(a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(), "{p}");
        let m = phone_message_id();
        assert_eq!(m.len(), 32);
        assert!(
            m.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
