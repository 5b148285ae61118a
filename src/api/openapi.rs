//! The OpenAPI 3 document served at `/api/openapi.json`: every endpoint with its parameters,
//! body, answers and the guide's own examples (read from the guide compiled in, so the document
//! cannot drift from the contract it describes).

use serde_json::{Value, json};

/// The integration guide, compiled in for its examples.
const GUIDE: &str = include_str!("../../fixtures/seed/whatsapp-integration-guide.md");

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

fn envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["success", "message", "meta"],
        "properties": {
            "success": { "type": "boolean" },
            "message": { "type": "string" },
            "data": data,
            "meta": { "$ref": "#/components/schemas/Meta" },
        },
    })
}

fn ok(description: &str, data: Value, example: Value) -> Value {
    let mut content = json!({ "schema": envelope(data) });
    if !example.is_null() {
        content["example"] = example;
    }
    json!({
        "description": description,
        "content": { "application/json": content },
    })
}

fn errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({ "$ref": format!("#/components/responses/E{c}") }),
            )
        })
        .collect()
}

fn operation(
    summary: &str,
    params: &[&str],
    body: Option<Value>,
    answer: Value,
    error_codes: &[u16],
) -> Value {
    let mut responses = errors(error_codes);
    responses.insert("200".into(), answer);
    let mut op = json!({
        "summary": summary,
        "security": [{ "bearer": [] }],
        "parameters": params
            .iter()
            .map(|p| json!({ "$ref": format!("#/components/parameters/{p}") }))
            .collect::<Vec<_>>(),
        "responses": responses,
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

/// The document.
pub fn document() -> Value {
    let obj = |props: Value| json!({ "type": "object", "properties": props });
    let status = obj(json!({
        "isConnected": { "type": "boolean" },
        "isActive": { "type": "boolean" },
        "hasQR": { "type": "boolean" },
        "qrCodeDataUrl": { "type": "string", "nullable": true },
        "phoneNumber": { "type": "string", "nullable": true },
        "platform": { "type": "string", "nullable": true },
        "pushname": { "type": "string", "nullable": true },
        "status": { "type": "string" },
        "code": { "type": "string" },
    }));
    let send_body = json!({
        "required": true,
        "content": { "application/json": {
            "schema": {
                "type": "object",
                "required": ["to", "message"],
                "properties": {
                    "to": { "type": "string", "description": "international digits without + (…@c.us), or a …@c.us, …@s.whatsapp.net, …@lid or …@g.us JID" },
                    "message": { "type": "string", "maxLength": 65536 },
                    "wait": { "type": "boolean", "default": true, "description": "wait for WhatsApp's ack (up to the configured time)" },
                },
            },
            "example": { "to": "1234567890", "message": "Hello from our chat agent!" },
        }},
    });
    let message = obj(json!({
        "messageId": { "type": "string" },
        "from": { "type": "string", "nullable": true },
        "to": { "type": "string", "nullable": true },
        "message": { "type": "string", "nullable": true },
        "direction": { "type": "string", "enum": ["inbound", "outbound"] },
        "timestamp": { "type": "string", "format": "date-time" },
        "hasMedia": { "type": "boolean" },
        "type": { "type": "string" },
        "createdAt": { "type": "string", "format": "date-time" },
        "chat": { "type": "string" },
        "status": { "type": "string" },
        "errorCode": { "type": "integer", "nullable": true },
    }));
    let connection = obj(json!({
        "subaccountId": { "type": "string" },
        "agentId": { "type": "string" },
        "status": { "type": "string" },
        "phoneNumber": { "type": "string", "nullable": true },
        "platform": { "type": "string", "nullable": true },
        "pushname": { "type": "string", "nullable": true },
        "connectedAt": { "type": "string", "format": "date-time", "nullable": true },
        "disconnectedAt": { "type": "string", "format": "date-time", "nullable": true },
        "createdAt": { "type": "string", "format": "date-time" },
        "updatedAt": { "type": "string", "format": "date-time" },
    }));
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": {
                "type": "object",
                "properties": {
                    "success": { "type": "boolean", "enum": [false] },
                    "message": { "type": "string" },
                    "error": { "type": "object", "properties": { "code": { "type": "string" } } },
                    "meta": { "$ref": "#/components/schemas/Meta" },
                },
            }}},
        })
    };
    let agent = "/api/whatsapp/{subaccountId}/{agentId}";
    let connect = operation(
        "Start the connection; answers the QR code to scan (or the status when linked)",
        &["subaccountId", "agentId"],
        None,
        ok(
            "QR code or status",
            obj(json!({
                "qrCode": { "type": "string" },
                "qrCodeDataUrl": { "type": "string" },
                "message": { "type": "string" },
            })),
            example(
                "WhatsApp QR code generated. Scan with your mobile app.",
                None,
            ),
        ),
        &[400, 401, 403, 409, 429, 503],
    );
    let get_status = operation(
        "Connection status",
        &["subaccountId", "agentId"],
        None,
        ok(
            "The status",
            status,
            example(
                "WhatsApp connection status retrieved",
                Some(("isConnected", json!(true))),
            ),
        ),
        &[400, 401, 403, 429],
    );
    let mut send = operation(
        "Send a text",
        &["subaccountId", "agentId", "IdempotencyKey"],
        Some(send_body),
        ok(
            "Sent (or accepted and pending)",
            obj(json!({
                "messageId": { "type": "string" },
                "to": { "type": "string" },
                "message": { "type": "string" },
                "timestamp": { "type": "integer" },
                "status": { "type": "string" },
            })),
            example("WhatsApp message sent successfully", None),
        ),
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    );
    send["description"] = json!(
        "Recorded first (durable, idempotent with Idempotency-Key), then sent in order at the account's pace."
    );
    let messages = operation(
        "Message history, newest first",
        &["subaccountId", "agentId", "limit", "skip"],
        None,
        ok(
            "The messages",
            obj(json!({
                "messages": { "type": "array", "items": message },
                "count": { "type": "integer" },
            })),
            example("WhatsApp message history retrieved", None),
        ),
        &[400, 401, 403, 404, 429],
    );
    let disconnect = operation(
        "Unlink the device; the connection row and history stay",
        &["subaccountId", "agentId"],
        None,
        ok(
            "Disconnected",
            obj(json!({ "message": { "type": "string" } })),
            example("WhatsApp disconnected successfully", None),
        ),
        &[400, 401, 403, 404, 429],
    );
    let connections = operation(
        "Every connection of a subaccount",
        &["subaccountId"],
        None,
        ok(
            "The connections",
            obj(json!({
                "connections": { "type": "array", "items": connection },
                "count": { "type": "integer" },
            })),
            example("WhatsApp connections retrieved", None),
        ),
        &[400, 401, 403, 429],
    );
    let activities = operation(
        "Activity log, newest first",
        &["subaccountId", "limit", "skip"],
        None,
        ok(
            "The activities",
            obj(json!({
                "activities": { "type": "array", "items": { "type": "object" } },
                "count": { "type": "integer" },
            })),
            Value::Null,
        ),
        &[400, 401, 403, 429],
    );
    let webhook = obj(json!({
        "url": { "type": "string", "format": "uri" },
        "events": { "type": "array", "items": { "type": "string", "enum": crate::service::WEBHOOK_EVENTS } },
        "signatureHeader": { "type": "string", "example": crate::service::SIGNATURE_HEADER },
        "createdBy": { "type": "string", "nullable": true },
        "createdAt": { "type": "string", "format": "date-time" },
        "updatedAt": { "type": "string", "format": "date-time" },
    }));
    let event = obj(json!({
        "id": { "type": "string", "description": "ULID: unique, sortable; deduplicate on it" },
        "event": { "type": "string", "enum": crate::service::WEBHOOK_EVENTS },
        "createdAt": { "type": "string", "format": "date-time" },
        "subaccountId": { "type": "string" },
        "agentId": { "type": "string" },
        "data": { "type": "object", "description": "message.received: a history message; message.status: messageId, to, status, errorCode; connection.update: status, code, phoneNumber" },
    }));
    let delivery = obj(json!({
        "id": { "type": "string" },
        "event": { "type": "string" },
        "state": { "type": "string", "enum": ["pending", "delivered", "failed"] },
        "attempts": { "type": "integer" },
        "lastStatus": { "type": "integer", "nullable": true },
        "lastError": { "type": "string", "nullable": true },
        "nextAttemptAt": { "type": "string", "format": "date-time", "nullable": true },
        "createdAt": { "type": "string", "format": "date-time" },
        "deliveredAt": { "type": "string", "format": "date-time", "nullable": true },
        "payload": event.clone(),
    }));
    let mut put_webhook = operation(
        "Set the agent's webhook (replaces it; waiting events go to the new URL)",
        &["subaccountId", "agentId"],
        Some(json!({
            "required": true,
            "content": { "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["url", "secret"],
                    "properties": {
                        "url": { "type": "string", "format": "uri", "maxLength": 2048, "description": "http or https" },
                        "secret": { "type": "string", "minLength": 16, "maxLength": 256, "description": "HMAC-SHA256 key of the signature header; never shown again" },
                        "events": { "type": "array", "items": { "type": "string", "enum": crate::service::WEBHOOK_EVENTS }, "description": "default: all" },
                    },
                },
                "example": { "url": "https://agent.example.com/whatsapp", "secret": "a-long-random-secret", "events": ["message.received"] },
            }},
        })),
        ok("The webhook", webhook.clone(), Value::Null),
        &[400, 401, 403, 413, 429],
    );
    put_webhook["description"] = json!(format!(
        "Each event is POSTed as JSON (schema WebhookEvent) with `{}: sha256=<hex HMAC-SHA256(secret, raw body)>`, \
         `{}`, `{}` and `{}` headers; at least once, in order per chat, retried with exponential backoff \
         until the dead-letter time. Answer 2xx to take it; to an inbound message, `{{\"reply\": \"text\"}}` \
         sends that text to the chat through the outbox (once per event).",
        crate::service::SIGNATURE_HEADER,
        crate::service::EVENT_ID_HEADER,
        crate::service::EVENT_HEADER,
        crate::service::ATTEMPT_HEADER,
    ));
    let get_webhook = operation(
        "The agent's webhook (never its secret)",
        &["subaccountId", "agentId"],
        None,
        ok("The webhook", webhook, Value::Null),
        &[400, 401, 403, 404, 429],
    );
    let delete_webhook = operation(
        "Remove the agent's webhook and the events still waiting for it",
        &["subaccountId", "agentId"],
        None,
        ok("Removed", obj(json!({})), Value::Null),
        &[400, 401, 403, 404, 429],
    );
    let deliveries = operation(
        "The agent's webhook events, newest first",
        &["subaccountId", "agentId", "deliveryStatus", "limit", "skip"],
        None,
        ok(
            "The events",
            obj(json!({
                "deliveries": { "type": "array", "items": delivery.clone() },
                "count": { "type": "integer" },
            })),
            Value::Null,
        ),
        &[400, 401, 403, 404, 429],
    );
    let redeliver = operation(
        "Deliver an event again (same id, same body), now",
        &["subaccountId", "agentId", "eventId"],
        None,
        ok("Queued", delivery, Value::Null),
        &[400, 401, 403, 404, 429],
    );
    let mut paths = serde_json::Map::new();
    for (path, method, op) in [
        (format!("{agent}/webhook"), "put", put_webhook),
        (format!("{agent}/webhook"), "get", get_webhook),
        (format!("{agent}/webhook"), "delete", delete_webhook),
        (format!("{agent}/webhook/deliveries"), "get", deliveries),
        (
            format!("{agent}/webhook/deliveries/{{eventId}}/redeliver"),
            "post",
            redeliver,
        ),
        (format!("{agent}/connect"), "post", connect),
        (format!("{agent}/status"), "get", get_status),
        (format!("{agent}/send"), "post", send),
        (format!("{agent}/messages"), "get", messages),
        (format!("{agent}/disconnect"), "post", disconnect),
        (
            "/api/whatsapp/{subaccountId}/connections".to_owned(),
            "get",
            connections,
        ),
        (
            "/api/whatsapp/{subaccountId}/activities".to_owned(),
            "get",
            activities,
        ),
        (
            "/healthz".to_owned(),
            "get",
            json!({ "summary": "The process is up", "responses": { "200": { "description": "up" } } }),
        ),
        (
            "/readyz".to_owned(),
            "get",
            json!({ "summary": "Database reachable and sessions resumed", "responses": { "200": { "description": "ready" }, "503": { "description": "not ready" } } }),
        ),
    ] {
        if let Some(ops) = paths
            .entry(path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            ops.insert(method.to_owned(), op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wa-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "WhatsApp for chat agents: the integration guide's API.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Meta": obj(json!({
                    "operationId": { "type": "string", "format": "uuid" },
                    "duration": { "type": "string", "example": "123ms" },
                })),
                "WebhookEvent": event,
            },
            "parameters": {
                "subaccountId": { "name": "subaccountId", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 128 } },
                "agentId": { "name": "agentId", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 128 } },
                "limit": { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500, "default": 50 } },
                "skip": { "name": "skip", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
                "deliveryStatus": { "name": "status", "in": "query", "schema": { "type": "string", "enum": ["pending", "delivered", "failed"] } },
                "eventId": { "name": "eventId", "in": "path", "required": true, "schema": { "type": "string" } },
                "IdempotencyKey": { "name": "Idempotency-Key", "in": "header", "schema": { "type": "string", "maxLength": 128 } },
            },
            "responses": {
                "E400": error("Bad input"),
                "E401": error("Missing or invalid token"),
                "E403": error("Not allowed for this token"),
                "E404": error("No such connection (or webhook, or event)"),
                "E409": error("Not connected"),
                "E413": error("Body or message too large"),
                "E422": error("Refused by WhatsApp"),
                "E429": error("Rate limited (see Retry-After)"),
                "E503": error("WhatsApp unreachable"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_carries_the_guides_example_and_every_ref_resolves() {
        let d = document();
        for (path, message) in [
            (
                "/api/whatsapp/{subaccountId}/{agentId}/send",
                "WhatsApp message sent successfully",
            ),
            (
                "/api/whatsapp/{subaccountId}/connections",
                "WhatsApp connections retrieved",
            ),
        ] {
            let op = d["paths"][path]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap();
            assert_eq!(
                op["responses"]["200"]["content"]["application/json"]["example"]["message"],
                json!(message),
                "{path}"
            );
        }
        let hook = &d["paths"]["/api/whatsapp/{subaccountId}/{agentId}/webhook"];
        for m in ["get", "put", "delete"] {
            assert!(hook[m]["responses"]["200"].is_object(), "webhook {m}");
        }
        let text = d.to_string();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("\"$ref\":\"#/") {
            rest = &rest[i + 10..];
            let end = rest.find('"').unwrap();
            let mut node = &d;
            for seg in rest[..end].split('/') {
                node = &node[seg];
            }
            assert!(!node.is_null(), "dangling $ref {}", &rest[..end]);
        }
    }
}
