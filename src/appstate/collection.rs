//! The five app-state collections (CLIENT-FEATURES §3.1; whatsmeow `appstate/keys.go`
//! `WAPatchName*`). The name is part of the snapshot and patch MACs, so it must be exact.

/// One app-state collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// `critical_block`: push name, locale and other account settings.
    CriticalBlock,
    /// `critical_unblock_low`: contacts.
    CriticalUnblockLow,
    /// `regular_high`: mute, star, delete-for-me, clear and delete chat, the NCT salt.
    RegularHigh,
    /// `regular_low`: archive, pin, mark read.
    RegularLow,
    /// `regular`: labels, pnForLidChat and more.
    Regular,
}

impl Collection {
    /// All five, in the order Baileys fetches them (`ALL_WA_PATCH_NAMES`; no source makes
    /// correctness depend on the order, §3.1).
    pub const ALL: [Collection; 5] = [
        Collection::CriticalBlock,
        Collection::CriticalUnblockLow,
        Collection::RegularHigh,
        Collection::RegularLow,
        Collection::Regular,
    ];

    /// The wire name (the `<collection name>` attribute and the MACs' trailing bytes).
    pub fn name(self) -> &'static str {
        match self {
            Collection::CriticalBlock => "critical_block",
            Collection::CriticalUnblockLow => "critical_unblock_low",
            Collection::RegularHigh => "regular_high",
            Collection::RegularLow => "regular_low",
            Collection::Regular => "regular",
        }
    }

    /// The collection a wire name names, if any.
    pub fn from_name(name: &str) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_none() {
        for c in Collection::ALL {
            assert_eq!(Collection::from_name(c.name()), Some(c));
        }
        assert_eq!(Collection::from_name("regular_medium"), None);
        assert_eq!(Collection::RegularLow.to_string(), "regular_low");
    }
}
