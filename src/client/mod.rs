//! The WhatsApp client: one per linked account. So far its pure parts: pairing (QR text and
//! image, pair-success verification), ClientPayload builders and the reconnect policy; the
//! connection lifecycle builds on them. It knows the
//! socket, codec and Signal layers, and storage only through traits; never HTTP or SQL.

pub mod pair;
pub mod payload;
pub mod qr;
pub mod reconnect;
