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
            "signal::{KeyPair",
            "proto",
            "util",
        ],
    ),
    ("signal", &["signal", "binary", "proto", "util"]),
    (
        "client",
        &["client", "socket", "signal", "binary", "proto", "util"],
    ),
    (
        "store",
        &["store", "signal", "client", "binary", "proto", "util"],
    ),
    (
        "sim",
        &["sim", "socket", "signal", "binary", "proto", "util"],
    ),
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

#[test]
fn layers_only_use_what_they_may_know() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for (layer, allowed) in RULES {
        let mut fs = Vec::new();
        files(&src.join(layer), &mut fs);
        for f in fs {
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(i) = rest.find("crate::") {
                    let used = &rest[i + "crate::".len()..];
                    assert!(
                        allowed.iter().any(|a| used.starts_with(a)),
                        "{}:{}: layer `{layer}` must not use `crate::{}`",
                        f.display(),
                        n + 1,
                        used.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or("")
                    );
                    rest = used;
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 20,
        "the scan found the crate paths it should check"
    );
}
