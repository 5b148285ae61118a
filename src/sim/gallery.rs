//! What a simulated phone keeps of the media it sent or received, as a real phone keeps the
//! file in its gallery: per message, the media key and a copy of the encrypted file (the same
//! bytes a re-encryption under that key gives: the IV is derived from the key, CLIENT-FEATURES
//! §2.2), so it can upload the file again when a linked device asks (media retry, §2.6). It
//! knows nothing of the server; it owns its copies and deletes them when it forgets an entry
//! or is dropped. Bounded: at most [`GALLERY_KEPT`] entries per phone.

use std::collections::VecDeque;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Media messages a phone keeps; past it the oldest is forgotten and its copy deleted.
pub const GALLERY_KEPT: usize = 64;

/// One media message the phone keeps.
pub(crate) struct Kept {
    /// The message id.
    pub(crate) id: String,
    /// The chat as the phone keys it (a user's PN JID, or a group JID).
    pub(crate) chat: String,
    /// Whether the phone's account sent it.
    pub(crate) from_me: bool,
    /// The file's media key.
    pub(crate) media_key: Zeroizing<[u8; 32]>,
    /// The CDN `mms-type` to upload it as again.
    pub(crate) mms_type: &'static str,
    /// The phone's copy of the encrypted file.
    pub(crate) copy: PathBuf,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("id", &self.id)
            .field("chat", &self.chat)
            .field("from_me", &self.from_me)
            .field("mms_type", &self.mms_type)
            .finish_non_exhaustive()
    }
}

/// A phone's kept media, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Gallery {
    kept: VecDeque<Kept>,
    /// The user deleted their media files (a fault): retries find the message but no file.
    pub(crate) deleted: bool,
}

impl Gallery {
    /// Keeps `k` (replacing an entry of the same message); the oldest goes past the bound.
    pub(crate) fn keep(&mut self, k: Kept) {
        if let Some(i) = self.kept.iter().position(|o| o.id == k.id)
            && let Some(old) = self.kept.remove(i)
            && old.copy != k.copy
        {
            let _ = std::fs::remove_file(&old.copy);
        }
        while self.kept.len() >= GALLERY_KEPT {
            if let Some(old) = self.kept.pop_front() {
                let _ = std::fs::remove_file(&old.copy);
            }
        }
        self.kept.push_back(k);
    }

    /// Whether message `id` is kept.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.kept.iter().any(|k| k.id == id)
    }

    /// The entry of message `id` whose `from_me` is `from_me` and whose chat `same_chat` accepts.
    pub(crate) fn find(
        &self,
        id: &str,
        from_me: bool,
        same_chat: impl Fn(&str) -> bool,
    ) -> Option<&Kept> {
        self.kept
            .iter()
            .rev()
            .find(|k| k.id == id && k.from_me == from_me && same_chat(&k.chat))
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

impl Drop for Gallery {
    fn drop(&mut self) {
        for k in &self.kept {
            let _ = std::fs::remove_file(&k.copy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &std::path::Path, id: &str) -> Kept {
        let copy = dir.join(format!("{id}.enc"));
        std::fs::write(&copy, id).unwrap();
        Kept {
            id: id.into(),
            chat: "1@s.whatsapp.net".into(),
            from_me: true,
            media_key: Zeroizing::new([1; 32]),
            mms_type: "image",
            copy,
        }
    }

    #[test]
    fn the_gallery_stays_bounded_and_deletes_what_it_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Gallery::default();
        for i in 0..GALLERY_KEPT + 3 {
            g.keep(kept(dir.path(), &i.to_string()));
        }
        assert_eq!(g.len(), GALLERY_KEPT);
        assert!(!g.has("0") && !dir.path().join("0.enc").exists());
        assert!(g.has("3") && dir.path().join("3.enc").exists());
        assert!(g.find("5", true, |c| c.starts_with('1')).is_some());
        assert!(g.find("5", false, |_| true).is_none());
        drop(g);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
