//! The integration guide (`fixtures/seed/whatsapp-integration-guide.md`, a copy of
//! `../shared/seed/`) is the REST contract: its JSON examples are read here, and every answer
//! of ours is compared with the example for the same endpoint, field by field (names, JSON
//! types, nesting). The REST test feeds this with the answers of its run.

use serde_json::Value;

/// The guide's text (and a check that the copy is current when the shared folder is there).
fn guide() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = std::fs::read_to_string(root.join("fixtures/seed/whatsapp-integration-guide.md"))
        .expect("the guide is in fixtures/seed");
    if let Ok(shared) =
        std::fs::read_to_string(root.join("../shared/seed/whatsapp-integration-guide.md"))
    {
        assert_eq!(
            ours, shared,
            "fixtures/seed/ differs from ../shared/seed/: copy it again"
        );
    }
    ours
}

/// Every JSON example that is an answer (has `success`), by its `message`.
pub(crate) fn examples() -> Vec<Value> {
    let text = guide();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("```json") {
        rest = &rest[i + "```json".len()..];
        let Some(end) = rest.find("```") else { break };
        if let Ok(v) = serde_json::from_str::<Value>(&rest[..end])
            && v.get("success").is_some()
        {
            out.push(v);
        }
        rest = &rest[end + 3..];
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `guide` is in `ours` with the same JSON type, recursively (arrays by their
/// first element). Extra fields of ours are allowed (clients ignore what they do not read).
pub(crate) fn same_shape(guide: &Value, ours: &Value, path: &str) -> Result<(), String> {
    match (guide, ours) {
        (Value::Object(g), Value::Object(o)) => {
            for (k, gv) in g {
                let p = format!("{path}.{k}");
                let ov = o.get(k).ok_or_else(|| format!("{p} is missing"))?;
                same_shape(gv, ov, &p)?;
            }
            Ok(())
        }
        (Value::Array(g), Value::Array(o)) => match (g.first(), o.first()) {
            (Some(g), Some(o)) => same_shape(g, o, &format!("{path}[0]")),
            _ => Ok(()),
        },
        (g, o) if kind(g) == kind(o) => Ok(()),
        (g, o) => Err(format!(
            "{path}: the guide has a {}, we have a {}",
            kind(g),
            kind(o)
        )),
    }
}

/// The guide's example whose `message` is `message` (and, when given, whose `data` has
/// `key` equal to `value`).
pub(crate) fn example(message: &str, key: Option<(&str, Value)>) -> Value {
    examples()
        .into_iter()
        .find(|e| {
            e["message"] == Value::String(message.into())
                && key
                    .as_ref()
                    .is_none_or(|(k, v)| e["data"].get(*k) == Some(v))
        })
        .unwrap_or_else(|| panic!("the guide has no example answer {message:?}"))
}

#[test]
fn the_guide_has_an_example_answer_for_each_endpoint() {
    let messages: Vec<String> = examples()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    for m in [
        "WhatsApp QR code generated. Scan with your mobile app.",
        "WhatsApp connection status retrieved",
        "WhatsApp message sent successfully",
        "WhatsApp message history retrieved",
        "WhatsApp connections retrieved",
        "WhatsApp disconnected successfully",
    ] {
        assert!(messages.iter().any(|x| x == m), "{m} in {messages:?}");
    }
    // The comparison itself: a missing field and a wrong type are both caught.
    let g = serde_json::json!({ "a": { "b": 1, "c": [ { "d": "x" } ] } });
    assert!(
        same_shape(
            &g,
            &serde_json::json!({ "a": { "b": 2, "c": [ { "d": "y" } ], "e": 0 } }),
            ""
        )
        .is_ok()
    );
    assert!(same_shape(&g, &serde_json::json!({ "a": { "c": [] } }), "").is_err());
    assert!(same_shape(&g, &serde_json::json!({ "a": { "b": "1", "c": [] } }), "").is_err());
    assert!(
        same_shape(
            &g,
            &serde_json::json!({ "a": { "b": 1, "c": [ { "d": 1 } ] } }),
            ""
        )
        .is_err()
    );
}
