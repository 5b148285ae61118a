//! The content classifier against plaintexts Baileys built (`fixtures/baileys/message_kinds.json`,
//! recorded by `tools/fixtures/message_kinds.mjs`): every expected value comes from what Baileys
//! itself read back from the same bytes, so a re-recorded set runs unchanged.

use serde_json::{Value, json};
use wa_gateway::client::content::{Classified, Content, Kind, classify};

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/baileys/message_kinds.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Our kind for what Baileys calls the content (the mapping is ours: whatsapp-web.js's names).
fn expected_kind(b: &Value) -> Option<Kind> {
    let ct = b["contentType"].as_str();
    let inner = ct.map(|c| &b[c]);
    Some(match ct {
        None => Kind::Unknown,
        Some("conversation" | "extendedTextMessage") => Kind::Chat,
        Some("imageMessage") => Kind::Image,
        Some("videoMessage") => Kind::Video,
        Some("ptvMessage") => Kind::Ptv,
        Some("audioMessage") if inner?["ptt"] == json!(true) => Kind::Ptt,
        Some("audioMessage") => Kind::Audio,
        Some("documentMessage") => Kind::Document,
        Some("stickerMessage") => Kind::Sticker,
        Some("locationMessage" | "liveLocationMessage") => Kind::Location,
        Some("contactMessage") => Kind::Vcard,
        Some("contactsArrayMessage") => Kind::MultiVcard,
        Some("reactionMessage") => Kind::Reaction,
        Some("protocolMessage") => match inner?["typeName"].as_str()? {
            "MESSAGE_EDIT" => Kind::Edit,
            "REVOKE" => Kind::Revoke,
            _ => return None,
        },
        Some("pinInChatMessage") => Kind::Pin,
        Some(p) if p.starts_with("pollCreationMessage") => Kind::PollCreation,
        Some("eventMessage") => Kind::Event,
        Some("groupInviteMessage") => Kind::GroupInvite,
        Some("buttonsResponseMessage") => Kind::ButtonsResponse,
        Some("templateButtonReplyMessage") => Kind::TemplateButtonReply,
        Some("listResponseMessage") => Kind::ListResponse,
        Some(other) => panic!("no kind mapped for Baileys' {other}"),
    })
}

/// `content[key]` equals Baileys' value (null on Baileys' side: absent on ours).
fn same(c: &Content, key: &str, baileys: &Value, name: &str) {
    let ours = c.details.get(key).cloned().unwrap_or(Value::Null);
    assert_eq!(ours, *baileys, "{name}: content.{key}");
}

#[test]
fn every_kind_baileys_builds_is_classified_as_baileys_reads_it() {
    let all = vectors();
    assert!(all.len() >= 30, "the fixture has its vectors");
    for v in &all {
        let name = v["name"].as_str().unwrap();
        let b = &v["baileys"];
        let plain = hex(v["plaintext_hex"].as_str().unwrap());
        let got = classify(&plain).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(kind) = expected_kind(b) else {
            assert_eq!(got, Classified::Protocol, "{name}: a protocol payload");
            continue;
        };
        let Classified::Stored(c) = got else {
            panic!(
                "{name}: classified as protocol, Baileys reads {}",
                b["contentType"]
            );
        };
        assert_eq!(c.kind, kind, "{name}");
        assert_eq!(c.kind.has_media(), kind.has_media(), "{name}");
        if let Some(text) = b["text"].as_str() {
            assert_eq!(c.text.as_deref(), Some(text), "{name}: text");
        }
        let envelopes: Vec<&str> = b["envelopes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        let ctx = &b["contextInfo"];
        let view_once = envelopes.iter().any(|e| e.starts_with("viewOnce"))
            || b["contentType"]
                .as_str()
                .is_some_and(|ct| b[ct]["viewOnce"] == json!(true));
        assert_eq!(c.view_once, view_once, "{name}: view once");
        let ephemeral = envelopes.contains(&"ephemeralMessage")
            || ctx["expiration"].as_u64().is_some_and(|e| e > 0);
        assert_eq!(c.ephemeral, ephemeral, "{name}: ephemeral");
        if let Some(e) = ctx["expiration"].as_u64().filter(|e| *e > 0) {
            same(&c, "expirationSeconds", &json!(e), name);
        }
        if let Some(id) = ctx["stanzaId"].as_str() {
            assert_eq!(c.details["quoted"]["id"], json!(id), "{name}: quoted id");
            assert_eq!(
                c.details["quoted"]["participant"], ctx["participant"],
                "{name}: quoted author"
            );
        }
        if let Some(m) = ctx["mentionedJid"].as_array().filter(|m| !m.is_empty()) {
            same(&c, "mentions", &json!(m), name);
        }
        if ctx["isForwarded"] == json!(true) {
            same(&c, "forwarded", &json!(true), name);
            same(&c, "forwardingScore", &ctx["forwardingScore"], name);
        }
        check_kind(name, b, &c);
    }
}

/// What each kind carries, as Baileys decoded it.
fn check_kind(name: &str, b: &Value, c: &Content) {
    let Some(ct) = b["contentType"].as_str() else {
        // Nothing Baileys knows: ours keeps the fields it did not know by number.
        let known: Vec<&str> = b["rawFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let fields = c.details["fields"].as_array().expect("field numbers");
        assert!(!fields.is_empty(), "{name}");
        assert!(known == ["messageContextInfo"] && !fields.contains(&json!(35)));
        return;
    };
    let x = &b[ct];
    match c.kind {
        Kind::Location if ct == "locationMessage" => {
            same(c, "latitude", &x["degreesLatitude"], name);
            same(c, "longitude", &x["degreesLongitude"], name);
            same(c, "name", &x["name"], name);
            same(c, "address", &x["address"], name);
            same(c, "comment", &x["comment"], name);
            same(c, "live", &json!(x["isLive"] == json!(true)), name);
        }
        Kind::Location => {
            same(c, "latitude", &x["degreesLatitude"], name);
            same(c, "longitude", &x["degreesLongitude"], name);
            same(c, "caption", &x["caption"], name);
            same(c, "live", &json!(true), name);
        }
        Kind::Vcard => {
            same(c, "displayName", &x["displayName"], name);
            same(c, "vcard", &x["vcard"], name);
        }
        Kind::MultiVcard => {
            same(c, "displayName", &x["displayName"], name);
            same(c, "contacts", &x["contacts"], name);
        }
        Kind::Reaction => {
            let emoji = x["text"].as_str().unwrap_or_default();
            same(c, "emoji", &json!(emoji), name);
            same(c, "removed", &json!(emoji.is_empty()), name);
            same(c, "targetId", &x["key"]["id"], name);
            same(c, "targetFromMe", &x["key"]["fromMe"], name);
            assert_eq!(
                c.target.as_ref().map(|t| t.id.as_str()),
                x["key"]["id"].as_str(),
                "{name}"
            );
        }
        Kind::Edit => {
            assert_eq!(
                c.target.as_ref().map(|t| t.id.as_str()),
                x["key"]["id"].as_str(),
                "{name}"
            );
            assert_eq!(
                c.text.as_deref(),
                x["editedMessage"]["text"].as_str(),
                "{name}: new text"
            );
            same(c, "editedAtMs", &x["timestampMs"], name);
        }
        Kind::Revoke => {
            assert_eq!(
                c.target.as_ref().map(|t| t.id.as_str()),
                x["key"]["id"].as_str(),
                "{name}"
            );
            same(c, "fromMe", &x["key"]["fromMe"], name);
        }
        Kind::Pin => {
            same(c, "targetId", &x["key"]["id"], name);
            same(c, "pinned", &json!(x["typeName"] == "PIN_FOR_ALL"), name);
        }
        Kind::PollCreation => {
            same(c, "name", &x["name"], name);
            same(c, "options", &x["options"], name);
            same(c, "selectableCount", &x["selectableOptionsCount"], name);
            assert_eq!(c.text.as_deref(), x["name"].as_str());
        }
        Kind::Event => {
            for (ours, theirs) in [
                ("name", "name"),
                ("description", "description"),
                ("startTime", "startTime"),
                ("endTime", "endTime"),
            ] {
                same(c, ours, &x[theirs], name);
            }
            assert_eq!(
                c.details["location"]["latitude"],
                x["location"]["degreesLatitude"]
            );
        }
        Kind::GroupInvite => {
            for k in ["groupJid", "inviteCode", "groupName", "inviteExpiration"] {
                same(c, k, &x[k], name);
            }
            assert_eq!(c.text.as_deref(), x["caption"].as_str());
        }
        Kind::ButtonsResponse => {
            same(c, "selectedButtonId", &x["selectedButtonId"], name);
            same(c, "selectedDisplayText", &x["selectedDisplayText"], name);
        }
        Kind::TemplateButtonReply => {
            for k in ["selectedId", "selectedDisplayText", "selectedIndex"] {
                same(c, k, &x[k], name);
            }
        }
        Kind::ListResponse => {
            same(c, "title", &x["title"], name);
            same(c, "description", &x["description"], name);
            same(
                c,
                "selectedRowId",
                &x["singleSelectReply"]["selectedRowId"],
                name,
            );
        }
        k if k.has_media() => {
            same(c, "mimetype", &x["mimetype"], name);
            same(c, "fileLength", &x["fileLength"], name);
            for k in ["seconds", "width", "height", "fileName"] {
                if !x[k].is_null() {
                    same(c, k, &x[k], name);
                }
            }
            if x["gifPlayback"] == json!(true) {
                same(c, "gif", &json!(true), name);
            }
            // Media keys never reach the content (it is shown to every reader).
            for secret in ["mediaKey", "fileEncSha256", "directPath", "url"] {
                assert!(c.details.get(secret).is_none(), "{name}: {secret}");
            }
        }
        Kind::Chat => {
            if let Some(url) = x["matchedText"].as_str() {
                assert_eq!(c.details["linkPreview"]["url"], json!(url));
                assert_eq!(c.details["linkPreview"]["title"], x["title"]);
            }
        }
        other => panic!("{name}: unchecked kind {other:?}"),
    }
}
