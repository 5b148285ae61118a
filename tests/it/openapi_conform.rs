//! Every answer the REST tests get is checked against the served OpenAPI document: the path and
//! method are in it, the status is one it lists, and the body matches that status's schema
//! (types, required fields, and no field the schema does not declare). A field added to an
//! answer but not to the document, or the other way round, fails every test that meets it.

use serde_json::Value;

fn doc() -> &'static Value {
    wa_gateway::api::openapi::document()
}

/// The document's template for `path` (`{x}` matches one segment).
fn template(path: &str) -> Option<&'static str> {
    let want: Vec<&str> = path.split('/').collect();
    doc()["paths"].as_object()?.keys().find_map(|t| {
        let segs: Vec<&str> = t.split('/').collect();
        (segs.len() == want.len()
            && segs
                .iter()
                .zip(&want)
                .all(|(s, w)| (s.starts_with('{') && !w.is_empty()) || s == w))
        .then_some(t.as_str())
    })
}

fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let mut node = doc();
            for seg in r.trim_start_matches("#/").split('/') {
                node = &node[seg];
            }
            resolve(node)
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

/// Why `v` does not match `schema`, if it does not.
fn mismatch(schema: &Value, v: &Value, at: &str) -> Option<String> {
    let s = resolve(schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = s[key].as_array() {
            return options
                .iter()
                .all(|o| mismatch(o, v, at).is_some())
                .then(|| format!("{at}: matches none of {key}"));
        }
    }
    if let Some(all) = s["allOf"].as_array() {
        return all.iter().find_map(|o| mismatch(o, v, at));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t, v)) {
        return Some(format!("{at}: {v} is not {types:?}"));
    }
    if let (Some(obj), Some(props)) = (v.as_object(), s["properties"].as_object()) {
        for r in s["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Some(format!("{at}: required `{r}` missing"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(p) => {
                    if let Some(m) = mismatch(p, val, &format!("{at}.{k}")) {
                        return Some(m);
                    }
                }
                None => return Some(format!("{at}: `{k}` is not in the document")),
            }
        }
    }
    if let (Some(list), Some(items)) = (v.as_array(), s.get("items")) {
        for (i, x) in list.iter().enumerate() {
            if let Some(m) = mismatch(items, x, &format!("{at}[{i}]")) {
                return Some(m);
            }
        }
    }
    None
}

/// Panics unless the answer `body` with `status` to `method url` is as the document says.
pub(crate) fn check(method: &str, url: &str, status: u16, body: &Value) {
    let path = url.split_once("://").map_or(url, |(_, rest)| {
        &rest[rest.find('/').unwrap_or(rest.len())..]
    });
    let path = path.split('?').next().unwrap_or(path);
    let Some(t) = template(path) else {
        // Not an endpoint: the fallback's 404 envelope.
        assert_eq!(status, 404, "{method} {path} is not in the document");
        return;
    };
    let op = &doc()["paths"][t][method.to_ascii_lowercase()];
    if op.is_null() {
        // Axum answers 405 for a method the path does not have.
        assert_eq!(status, 405, "{method} {t} is not in the document");
        return;
    }
    let answer = &op["responses"][status.to_string()];
    assert!(
        answer.is_object(),
        "{method} {t} answered {status}, which the document does not list: {body}"
    );
    let schema = &answer["content"]["application/json"]["schema"];
    if let Some(m) = mismatch(schema, body, "body") {
        panic!("{method} {t} {status}: {m}\n{body}");
    }
}

#[test]
fn the_checker_catches_an_undeclared_field_a_missing_one_and_a_wrong_type() {
    let url = "http://127.0.0.1:1/api/whatsapp/s/a/status";
    let meta = serde_json::json!({ "operationId": "x", "duration": "1ms" });
    let good = serde_json::json!({
        "success": true, "message": "m", "meta": meta,
        "data": { "isConnected": false, "status": "not_initialized" },
    });
    check("GET", url, 200, &good);
    for bad in [
        serde_json::json!({ "success": true, "message": "m", "meta": meta,
            "data": { "isConnected": false, "status": "x", "surprise": 1 } }),
        serde_json::json!({ "success": true, "message": "m", "meta": meta,
            "data": { "status": "x" } }),
        serde_json::json!({ "success": true, "message": "m", "meta": meta,
            "data": { "isConnected": "no", "status": "x" } }),
    ] {
        let r = std::panic::catch_unwind(|| check("GET", url, 200, &bad));
        assert!(r.is_err(), "{bad} passed");
    }
}
