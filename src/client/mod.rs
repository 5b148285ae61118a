//! The WhatsApp client: one per linked account. So far the pure pairing logic (QR text and
//! image, pair-success verification); the connection lifecycle builds on it. It knows the
//! socket, codec and Signal layers, and storage only through traits; never HTTP or SQL.

pub mod pair;
pub mod qr;
