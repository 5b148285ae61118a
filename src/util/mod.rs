//! Small utilities any layer may use.

pub mod bytes;
pub mod clock;
pub mod hex;
pub mod ids;
pub mod url;
