//! The OpenAPI document served at `/api/openapi.json`. This module only assembles it: utoipa
//! generates it from the handlers' `#[utoipa::path]` declarations (`routes`, `webhooks`) and the
//! shapes in `schema`, and the guide's own examples are added to its answers (read from the
//! guide compiled in, so the document cannot drift from the contract it describes). Tests check
//! every answer the service gives against it. No handler uses this module.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schema::WebhookEvent;

/// The integration guide, compiled in for its examples.
const GUIDE: &str = include_str!("../../fixtures/seed/whatsapp-integration-guide.md");

/// Bearer JWT on every `/api/whatsapp` call.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wa-gateway",
        description = "WhatsApp for chat agents: the integration guide's API, with a durable outbox and signed webhooks."
    ),
    paths(
        super::routes::connect,
        super::routes::status,
        super::routes::limits,
        super::routes::send,
        super::routes::messages,
        super::chats::chats,
        super::chats::chat_messages,
        super::chats::request_history,
        super::chats::act_on_chat,
        super::chats::contacts,
        super::chats::contact,
        super::media::get_media,
        super::media::get_linked_media,
        super::routes::disconnect,
        super::agents::delete_agent,
        super::routes::connections,
        super::routes::activities,
        super::routes::healthz,
        super::routes::readyz,
        super::webhooks::put_webhook,
        super::webhooks::get_webhook,
        super::webhooks::delete_webhook,
        super::webhooks::deliveries,
        super::webhooks::redeliver,
    ),
    components(schemas(WebhookEvent)),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The guide's example answer whose `message` is `message` (and whose `data.key` is `value`).
fn example(message: &str, key: Option<(&str, Value)>) -> Value {
    let mut rest = GUIDE;
    while let Some(i) = rest.find("```json") {
        rest = &rest[i + 7..];
        let Some(end) = rest.find("```") else { break };
        if let Ok(v) = serde_json::from_str::<Value>(&rest[..end])
            && v["message"] == json!(message)
            && key
                .as_ref()
                .is_none_or(|(k, val)| v["data"].get(*k) == Some(val))
        {
            return v;
        }
        rest = &rest[end + 3..];
    }
    Value::Null
}

/// The document, built once (at its first use) and kept.
pub fn document() -> &'static Value {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(build);
    &DOCUMENT
}

/// The document as served: serialized once.
pub(super) fn served() -> axum::body::Bytes {
    static SERVED: std::sync::LazyLock<axum::body::Bytes> =
        std::sync::LazyLock::new(|| axum::body::Bytes::from(document().to_string()));
    SERVED.clone()
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let agent = "/api/whatsapp/{subaccountId}/{agentId}";
    for (path, method, message, key) in [
        (
            format!("{agent}/connect"),
            "post",
            "WhatsApp QR code generated. Scan with your mobile app.",
            None,
        ),
        (
            format!("{agent}/status"),
            "get",
            "WhatsApp connection status retrieved",
            Some(("isConnected", json!(true))),
        ),
        (
            format!("{agent}/send"),
            "post",
            "WhatsApp message sent successfully",
            None,
        ),
        (
            format!("{agent}/messages"),
            "get",
            "WhatsApp message history retrieved",
            None,
        ),
        (
            format!("{agent}/disconnect"),
            "post",
            "WhatsApp disconnected successfully",
            None,
        ),
        (
            "/api/whatsapp/{subaccountId}/connections".to_owned(),
            "get",
            "WhatsApp connections retrieved",
            None,
        ),
    ] {
        let ex = example(message, key);
        let answer = &mut doc["paths"][path.as_str()][method]["responses"]["200"]["content"]["application/json"];
        if !ex.is_null() && answer.is_object() {
            answer["example"] = ex;
        }
    }
    // Any request may be cut off by the server's request timeout, and any connection past its
    // cap is refused: both are 503 envelopes (`request_timeout`, `too_many_connections`).
    if let Some(paths) = doc["paths"].as_object_mut() {
        for ops in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in ops.values_mut() {
                let responses = &mut op["responses"];
                if responses.is_object() && responses.get("503").is_none() {
                    responses["503"] = json!({
                        "description": "`request_timeout` (not answered in time) or \
                                        `too_many_connections` (the server is at its cap)",
                        "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/ErrorEnvelope" },
                        }},
                    });
                }
            }
        }
    }
    // What the service POSTs to a webhook (OpenAPI 3.1's `webhooks`).
    doc["webhooks"] = json!({
        "event": { "post": {
            "summary": "One event, to the agent's webhook URL",
            "description": format!(
                "Verify `{}` before parsing: it is `t=<unix seconds>,v1=<hex>` where `v1` is \
                 HMAC-SHA256(secret, t + \".\" + raw body) (Stripe's scheme); compare in \
                 constant time, and refuse a `t` more than 5 minutes from your clock (each \
                 attempt is signed afresh, so a replayed request is stale; the body is the same \
                 bytes on every retry). Deduplicate on `id` (delivery is at least once, in \
                 order per chat). Any 2xx whose body is read whole (at most {} bytes, within the \
                 attempt's time) takes the event; anything else is retried with backoff until \
                 dead-lettered. To a `message.received`, answering `{{\"reply\": \"text\"}}` \
                 sends that text to the chat; a reply not sent is listed with why \
                 (`replyIgnored`).",
                crate::service::SIGNATURE_HEADER,
                crate::service::MAX_ANSWER,
            ),
            "parameters": [
                { "name": crate::service::SIGNATURE_HEADER, "in": "header", "required": true, "schema": { "type": "string" } },
                { "name": crate::service::EVENT_ID_HEADER, "in": "header", "required": true, "schema": { "type": "string" } },
                { "name": crate::service::EVENT_HEADER, "in": "header", "required": true, "schema": { "type": "string" } },
                { "name": crate::service::ATTEMPT_HEADER, "in": "header", "required": true, "schema": { "type": "integer" } },
            ],
            "requestBody": { "required": true, "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/WebhookEvent" },
            }}},
            "responses": { "200": { "description": "Taken (any 2xx); optionally `{\"reply\": \"…\"}`" } },
        }},
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_built_once() {
        assert!(std::ptr::eq(document(), document()));
        assert_eq!(served(), document().to_string().as_bytes());
    }

    #[test]
    fn every_operation_is_there_with_the_guides_examples_and_every_ref_resolves() {
        let d = document();
        for (path, method, message) in [
            (
                "/api/whatsapp/{subaccountId}/{agentId}/send",
                "post",
                "WhatsApp message sent successfully",
            ),
            (
                "/api/whatsapp/{subaccountId}/connections",
                "get",
                "WhatsApp connections retrieved",
            ),
        ] {
            assert_eq!(
                d["paths"][path][method]["responses"]["200"]["content"]["application/json"]["example"]
                    ["message"],
                json!(message),
                "{path}"
            );
        }
        let agent = &d["paths"]["/api/whatsapp/{subaccountId}/{agentId}"]["delete"];
        for status in ["200", "403", "404"] {
            assert!(
                agent["responses"][status].is_object(),
                "DELETE agent {status}"
            );
        }
        let hook = &d["paths"]["/api/whatsapp/{subaccountId}/{agentId}/webhook"];

        for m in ["get", "put", "delete"] {
            assert!(hook[m]["responses"]["200"].is_object(), "webhook {m}");
        }
        assert!(d["components"]["securitySchemes"]["bearer"].is_object());
        // A send is JSON or a form with the file streamed; a file comes back as bytes.
        let body = &d["paths"]["/api/whatsapp/{subaccountId}/{agentId}/send"]["post"]["requestBody"]
            ["content"];
        assert!(body["application/json"]["schema"]["$ref"].is_string());
        let form = &body["multipart/form-data"]["schema"]["$ref"];
        let form = &d["components"]["schemas"][form.as_str().unwrap().rsplit('/').next().unwrap()];
        for f in ["to", "message", "file", "type", "thumbnail"] {
            assert!(form["properties"][f].is_object(), "form field {f}: {form}");
        }
        assert_eq!(form["properties"]["file"]["format"], json!("binary"));
        let media = &d["paths"]["/api/whatsapp/{subaccountId}/{agentId}/messages/{messageId}/media"]
            ["get"]["responses"];
        for status in ["200", "206", "304", "404", "409", "416"] {
            assert!(media[status].is_object(), "GET media {status}");
        }
        let file = &media["200"]["content"]["application/octet-stream"]["schema"]["$ref"];
        let file = &d["components"]["schemas"][file.as_str().unwrap().rsplit('/').next().unwrap()];
        assert_eq!(
            (&file["type"], &file["format"]),
            (&json!("string"), &json!("binary"))
        );
        assert_eq!(
            d["webhooks"]["event"]["post"]["requestBody"]["content"]["application/json"]["schema"]
                ["$ref"],
            json!("#/components/schemas/WebhookEvent")
        );
        let text = d.to_string();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("\"$ref\":\"#/") {
            rest = &rest[i + 10..];
            let end = rest.find('"').unwrap();
            let mut node = d;
            for seg in rest[..end].split('/') {
                node = &node[seg.replace("~1", "/").as_str()];
            }
            assert!(!node.is_null(), "dangling $ref {}", &rest[..end]);
        }
    }
}
