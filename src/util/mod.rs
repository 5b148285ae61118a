//! Small utilities any layer may use.

pub mod clock;
pub mod hex;
pub mod ids;
