//! The app-state (syncd) stanzas both ends speak (CLIENT-FEATURES §3.2, §3.6, §3.7): the
//! `w:sync:app:state` iq that asks for collections or uploads a patch, its answer per
//! collection (patches, a snapshot reference, or an error), and the `server_sync` notification
//! that says a collection moved. The client builds asks and reads answers; the simulator reads
//! asks and builds answers. Patches and snapshots are opaque bytes here.

use bytes::Bytes;

use crate::binary::{Jid, Node, Server};

/// The iq namespace.
pub const XMLNS: &str = "w:sync:app:state";
/// Collections read from one iq or notification at most (there are five).
pub const MAX_COLLECTIONS: usize = 16;
/// Patches read from one collection of one answer at most (a server pages long runs with
/// `has_more_patches`), and patches one sync request may upload in all (more is refused).
pub const MAX_PATCHES: usize = 10_000;

/// One collection asked for in a sync iq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionAsk {
    /// The collection's name (`regular_high`, …).
    pub name: String,
    /// Our version of it; 0 for none.
    pub version: u64,
    /// Ask for a snapshot (fresh state) rather than patches after `version`.
    pub snapshot: bool,
}

/// `<iq xmlns="w:sync:app:state" type="set" to="s.whatsapp.net"><sync><collection …/>…`: the id
/// is the caller's. A snapshot ask carries no `version` (whatsmeow `fetchAppStatePatches` omits
/// it; Baileys sends "0"; CLIENT-FEATURES Appendix A: omitted).
pub fn sync_request(asks: &[CollectionAsk]) -> Node {
    let collections = asks
        .iter()
        .map(|a| {
            let n = Node::new("collection").attr("name", a.name.clone());
            if a.snapshot {
                n.attr("return_snapshot", "true")
            } else {
                n.attr("version", a.version.to_string())
                    .attr("return_snapshot", "false")
            }
        })
        .collect();
    sync_iq(collections)
}

/// The iq that uploads `patch` (a `SyncdPatch`, without version) to collection `name`, which we
/// hold at `version` (whatsmeow `sendAppState`).
pub fn patch_upload(name: &str, version: u64, patch: Vec<u8>) -> Node {
    sync_iq(vec![
        Node::new("collection")
            .attr("name", name.to_owned())
            .attr("version", version.to_string())
            .attr("return_snapshot", "false")
            .children(vec![Node::new("patch").bytes(patch)]),
    ])
}

fn sync_iq(collections: Vec<Node>) -> Node {
    Node::new("iq")
        .attr("xmlns", XMLNS)
        .attr("type", "set")
        .attr("to", Jid::new("", Server::User))
        .children(vec![Node::new("sync").children(collections)])
}

/// A per-collection error in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionError {
    /// The code: 409 conflict (the sender is behind), 400/404 fatal, others retryable
    /// (whatsapp-rust `parse_collection_error`, after WA Web `CollectionState`).
    pub code: u16,
    /// The server's text.
    pub text: String,
}

/// What the server answered for one collection. `Debug` gives sizes only: a snapshot
/// reference carries its blob's media key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CollectionAnswer {
    /// The collection's name.
    pub name: String,
    /// The server's version of it (after the patches given).
    pub version: u64,
    /// More patches follow: ask again from the last one's version.
    pub has_more: bool,
    /// `SyncdPatch` bytes, oldest first.
    pub patches: Vec<Bytes>,
    /// An `ExternalBlobReference` to a `SyncdSnapshot` on the CDN.
    pub snapshot: Option<Bytes>,
    /// The collection failed.
    pub error: Option<CollectionError>,
}

impl std::fmt::Debug for CollectionAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionAnswer")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("has_more", &self.has_more)
            .field("patches", &self.patches.len())
            .field("snapshot", &self.snapshot.as_ref().map(|s| s.len()))
            .field("error", &self.error)
            .finish()
    }
}

/// Reads the `<sync>` of a sync iq's result. Patches sit under `<patches>` (whatsmeow
/// `ParsePatchList`) or directly under `<collection>` (Baileys `extractSyncdPatches` accepts
/// both, so we do too).
pub fn parse_sync_response(iq: &Node) -> Vec<CollectionAnswer> {
    let Some(sync) = iq.child("sync") else {
        return Vec::new();
    };
    sync.child_nodes()
        .iter()
        .filter(|c| c.tag == "collection")
        .take(MAX_COLLECTIONS)
        .map(|c| {
            let error = (c.get_str("type").as_deref() == Some("error")).then(|| {
                let e = c.child("error");
                CollectionError {
                    code: e
                        .and_then(|e| e.get_str("code"))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(500),
                    text: e
                        .and_then(|e| e.get_str("text"))
                        .map(|s| s.chars().take(256).collect())
                        .unwrap_or_default(),
                }
            });
            let patch_nodes = c
                .child("patches")
                .map(|p| p.child_nodes())
                .unwrap_or_default()
                .iter()
                .chain(c.child_nodes().iter())
                .filter(|p| p.tag == "patch");
            CollectionAnswer {
                name: c
                    .get_str("name")
                    .map(|s| s.into_owned())
                    .unwrap_or_default(),
                version: u64_attr(c, "version").unwrap_or(0),
                has_more: c.get_str("has_more_patches").as_deref() == Some("true"),
                patches: patch_nodes
                    .take(MAX_PATCHES)
                    .filter_map(|p| p.content_bytes().cloned())
                    .collect(),
                snapshot: c.child("snapshot").and_then(|s| s.content_bytes().cloned()),
                error,
            }
        })
        .collect()
}

/// One `<collection>` of a sync iq as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncItem {
    /// The collection's name.
    pub name: String,
    /// The asker's version (absent on a snapshot ask).
    pub version: Option<u64>,
    /// `return_snapshot="true"`.
    pub snapshot: bool,
    /// Patches uploaded (`SyncdPatch` bytes; a `<patch>` without content gives empty bytes,
    /// for the server to refuse); empty for a plain ask.
    pub patches: Vec<Bytes>,
}

/// Reads the collections of a sync iq (server side); None for an iq the server refuses whole:
/// no `<sync>`, no collection, more than `max` collections, more than [`MAX_PATCHES`] patches
/// in all, a name asked twice, or a `version` that is not a number. An over-limit ask is
/// refused, never cut short: applying the first patches of an upload and dropping the rest
/// would leave the asker believing all landed.
pub fn parse_sync_request(iq: &Node, max: usize) -> Option<Vec<SyncItem>> {
    let asked: Vec<&Node> = iq
        .child("sync")?
        .child_nodes()
        .iter()
        .filter(|c| c.tag == "collection")
        .collect();
    if asked.is_empty() || asked.len() > max.min(MAX_COLLECTIONS) {
        return None;
    }
    let patches = asked
        .iter()
        .flat_map(|c| c.child_nodes().iter())
        .filter(|p| p.tag == "patch")
        .count();
    if patches > MAX_PATCHES {
        return None;
    }
    let mut items: Vec<SyncItem> = Vec::with_capacity(asked.len());
    for c in asked {
        let name = c.get_str("name")?.into_owned();
        if items.iter().any(|i| i.name == name) {
            return None;
        }
        let version = match c.get_str("version") {
            None => None,
            Some(v) => Some(v.parse().ok()?),
        };
        items.push(SyncItem {
            name,
            version,
            snapshot: c.get_str("return_snapshot").as_deref() == Some("true"),
            patches: c
                .child_nodes()
                .iter()
                .filter(|p| p.tag == "patch")
                .map(|p| p.content_bytes().cloned().unwrap_or_default())
                .collect(),
        });
    }
    Some(items)
}

impl CollectionAnswer {
    /// A collection that failed with `code` and `text`; `version` is the server's, given with a
    /// 409 (0 leaves it out).
    pub fn failed(name: &str, version: u64, code: u16, text: &str) -> CollectionAnswer {
        CollectionAnswer {
            name: name.to_owned(),
            version,
            error: Some(CollectionError {
                code,
                text: text.to_owned(),
            }),
            ..Default::default()
        }
    }
}

/// The result iq answering sync iq `id` (server side).
pub fn sync_response(id: &str, answers: &[CollectionAnswer]) -> Node {
    let collections = answers
        .iter()
        .map(|a| {
            let mut n = Node::new("collection").attr("name", a.name.clone());
            // A failed collection names the server's version only when it has one to give.
            if a.error.is_none() || a.version > 0 {
                n = n.attr("version", a.version.to_string());
            }
            if a.has_more {
                n = n.attr("has_more_patches", "true");
            }
            let mut children = Vec::new();
            if let Some(e) = &a.error {
                n = n.attr("type", "error");
                children.push(
                    Node::new("error")
                        .attr("code", e.code.to_string())
                        .attr("text", e.text.clone()),
                );
            }
            if !a.patches.is_empty() {
                children.push(
                    Node::new("patches").children(
                        a.patches
                            .iter()
                            .map(|p| Node::new("patch").bytes(p.clone()))
                            .collect(),
                    ),
                );
            }
            if let Some(s) = &a.snapshot {
                children.push(Node::new("snapshot").bytes(s.clone()));
            }
            if children.is_empty() {
                n
            } else {
                n.children(children)
            }
        })
        .collect();
    Node::new("iq")
        .attr("id", id.to_owned())
        .attr("type", "result")
        .attr("from", Jid::new("", Server::User))
        .children(vec![Node::new("sync").children(collections)])
}

/// `<notification type="server_sync" id from="s.whatsapp.net" t><collection name version/>…`
/// (server side).
pub fn server_sync_notification(id: &str, t: u64, collections: &[(String, u64)]) -> Node {
    Node::new("notification")
        .attr("id", id.to_owned())
        .attr("type", "server_sync")
        .attr("from", Jid::new("", Server::User))
        .attr("t", t.to_string())
        .children(
            collections
                .iter()
                .map(|(name, v)| {
                    Node::new("collection")
                        .attr("name", name.clone())
                        .attr("version", v.to_string())
                })
                .collect(),
        )
}

/// The collections a `server_sync` notification names, every child (whatsmeow
/// `handleAppStateNotification`; Baileys reads only the first — Appendix A: all), with the
/// version the server holds when it says.
pub fn parse_server_sync(node: &Node) -> Vec<(String, Option<u64>)> {
    node.child_nodes()
        .iter()
        .filter(|c| c.tag == "collection")
        .take(MAX_COLLECTIONS)
        .filter_map(|c| {
            let name = c.get_str("name")?.into_owned();
            Some((name, u64_attr(c, "version")))
        })
        .collect()
}

fn u64_attr(n: &Node, key: &str) -> Option<u64> {
    n.get_str(key).and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_ask_carries_no_version_and_a_patch_ask_does() {
        let iq = sync_request(&[
            CollectionAsk {
                name: "regular".into(),
                version: 0,
                snapshot: true,
            },
            CollectionAsk {
                name: "regular_low".into(),
                version: 7,
                snapshot: false,
            },
        ]);
        let items = parse_sync_request(&iq, 5).expect("a well-formed ask");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].version, None);
        assert!(items[0].snapshot);
        assert_eq!(items[1].version, Some(7));
        assert!(!items[1].snapshot);
        assert_eq!(iq.get_str("xmlns").as_deref(), Some(XMLNS));
    }

    #[test]
    fn the_server_refuses_a_malformed_ask_whole() {
        let ask = |cs: Vec<Node>| Node::new("iq").children(vec![Node::new("sync").children(cs)]);
        let coll = |name: &str, version: Option<&str>| {
            let n = Node::new("collection").attr("name", name.to_owned());
            match version {
                Some(v) => n.attr("version", v.to_owned()),
                None => n,
            }
        };
        assert!(parse_sync_request(&ask(vec![coll("regular", Some("1"))]), 5).is_some());
        assert!(
            parse_sync_request(&ask(vec![]), 5).is_none(),
            "no collection"
        );
        assert!(parse_sync_request(&Node::new("iq"), 5).is_none(), "no sync");
        let twice = ask(vec![coll("regular", Some("1")), coll("regular", Some("2"))]);
        assert!(parse_sync_request(&twice, 5).is_none(), "a name twice");
        let nan = ask(vec![coll("regular", Some("x1"))]);
        assert!(
            parse_sync_request(&nan, 5).is_none(),
            "a version not a number"
        );
        let many = ask((0..3).map(|i| coll(&format!("c{i}"), None)).collect());
        assert!(parse_sync_request(&many, 2).is_none(), "past max");
        let empty_patch = ask(vec![
            coll("regular", Some("1")).children(vec![Node::new("patch")]),
        ]);
        let items = parse_sync_request(&empty_patch, 5).unwrap();
        assert_eq!(
            items[0].patches,
            vec![Bytes::new()],
            "kept, for the server to refuse"
        );
    }

    #[test]
    fn the_server_refuses_an_ask_over_the_patch_limit_whole_not_cut_short() {
        let patches = |n: usize| -> Vec<Node> {
            (0..n)
                .map(|i| Node::new("patch").bytes(vec![u8::try_from(i % 251).unwrap_or(0)]))
                .collect()
        };
        let coll = |name: &str, n: usize| {
            Node::new("collection")
                .attr("name", name.to_owned())
                .attr("version", "1")
                .children(patches(n))
        };
        let ask = |cs: Vec<Node>| Node::new("iq").children(vec![Node::new("sync").children(cs)]);
        // At the limit: every patch is read.
        let at = parse_sync_request(&ask(vec![coll("regular", MAX_PATCHES)]), 5).unwrap();
        assert_eq!(at[0].patches.len(), MAX_PATCHES);
        // One over, in one collection or across two: refused whole.
        assert!(parse_sync_request(&ask(vec![coll("regular", MAX_PATCHES + 1)]), 5).is_none());
        let split = ask(vec![
            coll("regular", MAX_PATCHES / 2 + 1),
            coll("regular_low", MAX_PATCHES / 2),
        ]);
        assert!(
            parse_sync_request(&split, 5).is_none(),
            "over the limit in all"
        );
    }

    #[test]
    fn answers_read_back_patches_snapshot_paging_and_errors() {
        let answers = vec![
            CollectionAnswer {
                name: "regular_high".into(),
                version: 12,
                has_more: true,
                patches: vec![Bytes::from_static(b"p1"), Bytes::from_static(b"p2")],
                snapshot: Some(Bytes::from_static(b"snap")),
                error: None,
            },
            CollectionAnswer {
                name: "regular".into(),
                version: 3,
                error: Some(CollectionError {
                    code: 409,
                    text: "conflict".into(),
                }),
                ..Default::default()
            },
        ];
        let iq = sync_response("abc", &answers);
        assert_eq!(parse_sync_response(&iq), answers);
    }

    #[test]
    fn a_patch_directly_under_its_collection_is_read_too() {
        let iq = Node::new("iq").children(vec![Node::new("sync").children(vec![
            Node::new("collection")
                .attr("name", "regular")
                .attr("version", "2")
                .children(vec![Node::new("patch").bytes(b"x".to_vec())]),
        ])]);
        let got = parse_sync_response(&iq);
        assert_eq!(got[0].patches, vec![Bytes::from_static(b"x")]);
        assert_eq!(got[0].version, 2);
    }

    #[test]
    fn server_sync_names_every_collection() {
        let n = server_sync_notification(
            "n1",
            5,
            &[("regular".into(), 4), ("critical_block".into(), 9)],
        );
        assert_eq!(
            parse_server_sync(&n),
            vec![
                ("regular".to_string(), Some(4)),
                ("critical_block".to_string(), Some(9))
            ]
        );
    }
}
