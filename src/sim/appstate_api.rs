//! The simulator's Rust API for app state (CLIENT-FEATURES §3): the phone's own changes, the
//! phone's reading of a collection, the server's page size, corruption faults for recovery
//! tests, and what the phone keeps (its sync keys and NCT salt) for tests that check a
//! client's work against it.

use super::appstate::{COLLECTIONS, CollectionView, Corruption, PhoneAction, collection_index};
use super::error::SimError;
use super::server::valid_number;
use super::simulator::Simulator;

impl Simulator {
    /// User `number`'s phone makes `action` (archive, mute, pin, read, contact, NCT salt):
    /// encoded as a patch with the account's sync key, stored at the next version and
    /// announced by `server_sync` to every linked device. Returns (collection, version).
    pub fn app_state_action(
        &self,
        number: &str,
        action: &PhoneAction,
    ) -> Result<(&'static str, u64), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let done = super::phone_appstate::phone_action(&self.shared, number, action)?;
        Ok((done.name, done.version))
    }

    /// User `number`'s collection `collection` as its phone reads it (None: unknown
    /// collection or user).
    pub fn app_state(&self, number: &str, collection: &str) -> Option<CollectionView> {
        let st = self.shared.state.lock().ok()?;
        st.phones.get(number)?.app_state.view(collection)
    }

    /// Patches served per `<collection>` answer for user `number` (at least 1).
    pub fn set_app_state_page(&self, number: &str, page: usize) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        st.phone(number, None).app_state.set_page(page);
        Ok(())
    }

    /// Damages the server's copy of user `number`'s collection (see [`Corruption`]); false
    /// when there is nothing to damage (no patch, unknown collection or user).
    pub fn app_state_fault(&self, number: &str, collection: &str, how: Corruption) -> bool {
        if collection_index(collection).is_none() {
            return false;
        }
        let Ok(mut st) = self.shared.state.lock() else {
            return false;
        };
        st.phones
            .get_mut(number)
            .is_some_and(|p| p.app_state.corrupt(collection, how))
    }

    /// Arms a race for tests: user `number`'s phone makes `action` just before the server
    /// reads the next upload to that action's collection, so the upload conflicts (409 with
    /// the phone's patch) as when another device writes at the same moment.
    pub fn app_state_write_first(
        &self,
        number: &str,
        action: &PhoneAction,
    ) -> Result<(), SimError> {
        if !valid_number(number) {
            return Err(SimError::BadNumber);
        }
        let (c, muts) = action.mutations();
        let ci = collection_index(c.name()).ok_or(SimError::Internal)?;
        let mut st = self.shared.state.lock().map_err(|_| SimError::Internal)?;
        st.phone(number, None).app_state.write_first(ci, muts);
        Ok(())
    }

    /// The NCT salt user `number`'s phone last set (`nct_salt_sync`), for a cstoken check.
    pub fn nct_salt(&self, number: &str) -> Option<Vec<u8>> {
        let st = self.shared.state.lock().ok()?;
        Some(st.phones.get(number)?.app_state.nct_salt()?.to_vec())
    }

    /// User `number`'s app-state sync keys as (key id, key data), oldest first: what its key
    /// shares carry, for tests that decode what the server holds.
    pub fn app_state_keys(&self, number: &str) -> Vec<(Vec<u8>, [u8; 32])> {
        let Ok(st) = self.shared.state.lock() else {
            return Vec::new();
        };
        st.phones
            .get(number)
            .map(|p| {
                p.app_state
                    .keys()
                    .iter()
                    .map(|k| (k.id.clone(), *k.data))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The collection names, in the order the simulator lists them.
    pub fn app_state_collections(&self) -> [&'static str; 5] {
        COLLECTIONS
    }
}
