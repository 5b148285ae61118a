//! The arrows between layers (src/lib.rs) hold: no module reaches a layer it must not know.

use std::path::{Path, PathBuf};

/// For each layer, the crate modules it may name.
const RULES: &[(&str, &[&str])] = &[
    ("binary", &["binary", "proto", "util"]),
    (
        "socket",
        &[
            "socket",
            "binary",
            "signal::curve",
            "signal::KeyPair",
            "signal::xeddsa_verify",
            "proto",
            "util",
        ],
    ),
    ("signal", &["signal", "binary", "proto", "util"]),
    ("media", &["media", "proto", "util"]),
    ("appstate", &["appstate", "proto", "util", "binary::Jid"]),
    ("stanza", &["stanza", "signal", "binary", "proto", "util"]),
    (
        "client",
        &[
            "client", "stanza", "socket", "signal", "media", "appstate", "binary", "proto", "util",
        ],
    ),
    (
        "store",
        &["store", "signal", "client", "binary", "proto", "util"],
    ),
    (
        "sim",
        &[
            "sim", "stanza", "socket", "signal", "media", "appstate", "binary", "proto", "util",
        ],
    ),
    (
        "service",
        &["service", "client", "store", "binary", "proto", "util"],
    ),
    ("api", &["api", "service", "client", "binary", "util"]),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::` path in `text`, with grouped use trees expanded: `crate::{a::X, b::{Y, Z}}`
/// gives `a::X`, `b::Y` and `b::Z` (each as its segments), whatever the line breaks.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut rest = compact.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let used = tree(rest, &mut Vec::new(), &mut out);
        rest = &rest[used..];
    }
    out
}

/// Parses one use tree at the start of `s` under `prefix`; returns the bytes consumed.
fn tree(s: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let ident_len = |s: &str| {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut pos = 0;
    let depth = prefix.len();
    loop {
        if s[pos..].starts_with('{') {
            pos += 1;
            loop {
                pos += tree(&s[pos..], prefix, out);
                match s[pos..].chars().next() {
                    Some(',') => pos += 1,
                    Some('}') => {
                        pos += 1;
                        break;
                    }
                    _ => break,
                }
                if s[pos..].starts_with('}') {
                    pos += 1;
                    break;
                }
            }
            prefix.truncate(depth);
            return pos;
        }
        let n = ident_len(&s[pos..]);
        if n == 0 {
            break;
        }
        prefix.push(s[pos..pos + n].to_owned());
        pos += n;
        if s[pos..].starts_with("::") {
            pos += 2;
        } else {
            break;
        }
    }
    if prefix.len() > depth {
        out.push(prefix.clone());
    }
    prefix.truncate(depth);
    pos
}

fn allowed_path(allowed: &[&str], path: &[String]) -> bool {
    allowed.iter().any(|a| {
        let segs: Vec<&str> = a.split("::").collect();
        segs.len() <= path.len() && segs.iter().zip(path).all(|(a, p)| a == p)
    })
}

#[test]
fn grouped_imports_are_expanded_before_they_are_checked() {
    let paths = crate_paths(
        "use crate::{binary::Node,\n    client::{store::Creds, Event}};\nlet x = crate::util::hex::encode(b);",
    );
    let flat: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        flat,
        [
            "binary::Node",
            "client::store::Creds",
            "client::Event",
            "util::hex::encode"
        ]
    );
    // A grouped import of a layer the socket must not know is caught.
    let socket = RULES.iter().find(|(l, _)| *l == "socket").unwrap().1;
    let bad = crate_paths("use crate::{binary::Node, client::Client};");
    assert!(!bad.iter().all(|p| allowed_path(socket, p)));
    assert!(allowed_path(socket, &["signal".into(), "KeyPair".into()]));
    assert!(!allowed_path(
        socket,
        &["signal".into(), "SessionCipher".into()]
    ));
}

#[test]
fn layers_only_use_what_they_may_know() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for (layer, allowed) in RULES {
        let mut fs = Vec::new();
        files(&src.join(layer), &mut fs);
        for f in fs {
            let text = std::fs::read_to_string(&f).unwrap();
            for path in crate_paths(&text) {
                assert!(
                    allowed_path(allowed, &path),
                    "{}: layer `{layer}` must not use `crate::{}`",
                    f.display(),
                    path.join("::")
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 20,
        "the scan found the crate paths it should check"
    );
}

/// The simulator's files from the bottom up (ARCHITECTURE.md: conn → session → route/groups →
/// server state, never back): a file may name only files of a lower rank, so files of one
/// rank (`route` and `groups`) do not know each other and no circle can form.
const SIM_RANKS: &[(&str, u8)] = &[
    ("pair", 0),
    ("compose", 0),
    ("iq", 0),
    ("cdn", 0),
    ("inbox", 0),
    ("gallery", 0),
    ("samples", 0),
    ("stanza_log", 0),
    ("appstate", 2),
    ("error", 1),
    ("usync", 1),
    ("cdn_http", 1),
    ("phone", 1),
    ("history", 1),
    ("tls", 2),
    ("server", 3),
    ("deliver", 4),
    ("retry", 5),
    ("phone_media", 5),
    ("phone_appstate", 5),
    ("route", 6),
    ("groups", 6),
    ("accept", 7),
    ("session", 8),
    ("register", 8),
    ("conn", 9),
    ("simulator", 10),
    ("control", 11),
    ("appstate_api", 11),
    ("mod", 12),
];

/// The sibling files `text` names (`super::x` or `crate::sim::x`), its unit tests left out.
fn sim_uses(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = Vec::new();
    for prefix in ["super::", "crate::sim::"] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let n = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..n].to_owned());
        }
    }
    out
}

#[test]
fn the_simulators_files_use_only_files_below_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim");
    let rank = |name: &str| SIM_RANKS.iter().find(|(n, _)| *n == name).map(|r| r.1);
    let mut fs = Vec::new();
    files(&dir, &mut fs);
    assert!(fs.len() >= SIM_RANKS.len(), "every file is ranked");
    for f in fs {
        let name = f.file_stem().unwrap().to_str().unwrap().to_owned();
        let mine = rank(&name).unwrap_or_else(|| panic!("src/sim/{name}.rs has no rank"));
        for used in sim_uses(&std::fs::read_to_string(&f).unwrap()) {
            let theirs = rank(&used).unwrap_or_else(|| panic!("{name} uses unknown {used}"));
            assert!(
                theirs < mine,
                "src/sim/{name}.rs (rank {mine}) must not use `{used}` (rank {theirs})"
            );
        }
    }
    // The scan sees what it must: a use trees' `super::x::{…}` and a path in code alike.
    assert_eq!(
        sim_uses(
            "use super::server::{A, B};\nlet x = crate::sim::route::f();\n#[cfg(test)]\nuse super::*;"
        ),
        ["server", "route"]
    );
}

/// Inside `api`, for each file, the sibling modules it may name through `super::` (items of
/// `api/mod.rs` itself, such as `ApiError`, are open to all). Handlers read requests through
/// `extract` and answer the shapes of `schema`; `openapi` only assembles the document from the
/// handlers and shapes, and nothing but the router in `mod.rs` uses it: no cycle between
/// routes, webhooks, agents and openapi.
const API_RULES: &[(&str, &[&str])] = &[
    ("auth", &[]),
    ("limits", &[]),
    ("schema", &[]),
    ("extract", &["auth", "limits"]),
    ("server", &["extract"]),
    ("media", &["extract", "schema", "limits"]),
    ("routes", &["extract", "schema", "limits", "auth", "media"]),
    ("webhooks", &["extract", "schema", "limits", "auth"]),
    ("agents", &["extract", "schema", "limits"]),
    ("chats", &["extract", "schema", "limits"]),
    (
        "openapi",
        &["routes", "webhooks", "agents", "chats", "media", "schema"],
    ),
];

/// Every `super::` path in `text` (grouped imports expanded), as its segments.
fn super_paths(text: &str) -> Vec<Vec<String>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut rest = compact.as_str();
    while let Some(i) = rest.find("super::") {
        // `super::super::…` and `crate::…::super` do not occur in api/; a `super::` inside a
        // `mod tests` names the file's own module, whose items are not siblings either.
        rest = &rest[i + "super::".len()..];
        let used = tree(rest, &mut Vec::new(), &mut out);
        rest = &rest[used..];
    }
    out
}

#[test]
fn api_modules_point_one_way() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let siblings: Vec<String> = std::fs::read_dir(&api)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs")
                .filter(|n| *n != "mod")
                .map(str::to_owned)
        })
        .collect();
    for s in &siblings {
        assert!(
            API_RULES.iter().any(|(f, _)| f == s),
            "src/api/{s}.rs has no rule in API_RULES"
        );
    }
    let mut checked = 0;
    for (file, allowed) in API_RULES {
        let Ok(text) = std::fs::read_to_string(api.join(format!("{file}.rs"))) else {
            continue;
        };
        for path in super_paths(&text) {
            let first = path[0].as_str();
            if siblings.iter().any(|s| s == first) {
                assert!(
                    allowed.contains(&first),
                    "src/api/{file}.rs must not use `super::{}`",
                    path.join("::")
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 5,
        "the scan found the sibling paths it should check"
    );
}
