//! The OpenAPI 3 description of the HTTP API, served at `/v1/openapi.json`.
//! A test checks that every route in [`crate::ROUTES`] is described here and
//! nothing else is.

use serde_json::{Value, json};
use switchboard::event::EventType;
use switchboard::webhook::LogStatus;

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The document.
pub fn document() -> Value {
    let event_types: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
    let log_statuses = LogStatus::ALL.map(LogStatus::as_str);
    let secured = json!([{"bearer": []}]);
    let common = |mut responses: serde_json::Map<String, Value>| {
        responses.insert("401".into(), error("Missing or invalid token"));
        responses.entry("429").or_insert_with(|| error("The tenant's request budget for this second is spent"));
        responses.insert("503".into(), error("The state store is unavailable"));
        Value::Object(responses)
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Switchboard HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish real-time events to the WebSocket clients of your tenant, and read presence and stats. The tenant always comes from the bearer token."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ["invalid_json", "invalid_field", "unauthorized", "forbidden", "not_found", "method_not_allowed", "payload_too_large", "rate_limited", "offline_budget_exceeded", "limit_exceeded", "unavailable", "not_configured"]},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "The bad field, for invalid_field"}
                    }
                },
                "Target": {
                    "description": "Who receives the event, inside the caller's tenant. Absent: the whole tenant.",
                    "oneOf": [
                        {"type": "object", "required": ["tenant"], "properties": {"tenant": {"type": "boolean", "enum": [true]}}, "additionalProperties": false},
                        {"type": "object", "required": ["user"], "properties": {"user": {"type": "string"}}, "additionalProperties": false},
                        {"type": "object", "required": ["connection"], "properties": {"connection": {"type": "string"}}, "additionalProperties": false},
                        {"type": "object", "required": ["channel"], "properties": {"channel": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._@+=-]{1,128}$", "example": "queue:support", "description": "a channel of the tenant, <namespace>:<name>: its subscribers whose filter matches; the namespace must be declared (CHANNEL_NAMESPACES) and its publish rule admit the caller"}}, "additionalProperties": false}
                    ]
                },
                "PublishBatch": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": false,
                    "description": "Several events at once: each recorded and resolved as a single publish, and each connection gets one frame {\"type\":\"batch\",\"events\":[...]} with all of its events. Checked and rate-limited whole before anything goes out.",
                    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/components/schemas/PublishRequest"}}}
                },
                "PublishBatchResponse": {"type": "object", "properties": {
                    "event_ids": {"type": "array", "items": {"type": "string"}, "description": "in request order"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/PublishResponse"}},
                    "report": {"$ref": "#/components/schemas/Report"}
                }},
                "PublishRequest": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"type": "string", "enum": event_types},
                        "data": {"description": "Free-form JSON payload"},
                        "target": {"$ref": "#/components/schemas/Target"}
                    }
                },
                "Report": {
                    "type": "object",
                    "properties": {
                        "matched": {"type": "integer"}, "delivered": {"type": "integer"}, "gone": {"type": "integer"},
                        "failed": {"type": "integer"}, "queued_offline": {"type": "integer"},
                        "offline_refused": {"type": "string", "enum": ["unknown_user", "tenant_queues_full", "tenant_bytes_full", "message_too_large"], "description": "why an event for an offline user was not queued; absent when it was"},
                        "webhooks_enqueued": {"type": "integer"}, "webhooks_failed": {"type": "integer"}, "chunks": {"type": "integer"},
                        "throttled": {"type": "integer", "description": "posts API Gateway throttled (429); each made again, paced, or handed on"},
                        "requeued": {"type": "integer", "description": "recipients not reached within FANOUT_RETRY_MS, handed to a queued job that posts to each once"}
                    }
                },
                "PublishResponse": {"type": "object", "properties": {"event_id": {"type": "string"}, "report": {"$ref": "#/components/schemas/Report"}}},
                "Stats": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "tenant_connections": {"type": "integer"}, "total_connections": {"type": "integer", "description": "platform operators only (admins of PLATFORM_TENANT)"}, "tenants": {"type": "integer", "description": "platform operators only"}}},
                "UserOnline": {"type": "object", "properties": {"user_id": {"type": "string"}, "is_online": {"type": "boolean"}, "connection_count": {"type": "integer"}}},
                "Presence": {"type": "object", "properties": {"count": {"type": "integer"}, "online_users": {"type": "array", "items": {"type": "string"}}}},
                "WebhookRequest": {
                    "type": "object",
                    "additionalProperties": false,
                    "description": "name and url are required on create; every field is optional on PATCH",
                    "properties": {
                        "name": {"type": "string", "maxLength": 255},
                        "url": {"type": "string", "format": "uri", "description": "https to a public address in production"},
                        "events": {"type": "array", "items": {"type": "string"}, "description": "event types or prefixes (call.*), default [\"*\"]"},
                        "channels": {"type": "array", "maxItems": 50, "items": {"type": "string", "example": "queue:*"}, "description": "channel patterns (queue:support, queue:sup*, queue:*): only events published to a matching channel; empty or absent: every event of its topics, wherever published"},
                        "secret": {"type": "string", "description": "whsec_<base64>, generated when absent"},
                        "is_active": {"type": "boolean"},
                        "retry_count": {"type": "integer", "minimum": 0, "maximum": 10},
                        "timeout": {"type": "integer", "minimum": 1, "maximum": 30}
                    }
                },
                "Webhook": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "name": {"type": "string"}, "url": {"type": "string"},
                        "events": {"type": "array", "items": {"type": "string"}},
                        "channels": {"type": "array", "items": {"type": "string"}, "description": "channel patterns; absent: none (every event of its topics)"},
                        "secret": {"type": "string", "description": "only in the answer to create"},
                        "is_active": {"type": "boolean"}, "retry_count": {"type": "integer"}, "timeout": {"type": "integer"},
                        "created_at": {"type": "integer"}, "updated_at": {"type": "integer"}
                    }
                },
                "WebhookTest": {"type": "object", "properties": {"success": {"type": "boolean"}, "status_code": {"type": "integer", "nullable": true}, "duration_ms": {"type": "integer"}, "error": {"type": "string", "nullable": true}, "response_body": {"type": "string"}, "delivery_id": {"type": "string"}}},
                "DeliveryLog": {"type": "object", "properties": {"deliveries": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "webhook_id": {"type": "string"}, "delivery_id": {"type": "string"}, "event": {"type": "string"}, "attempt": {"type": "integer"}, "response_code": {"type": "integer", "nullable": true}, "response_body": {"type": "string"}, "error": {"type": "string", "nullable": true}, "duration_ms": {"type": "integer"}, "status": {"type": "string", "enum": log_statuses}, "created_at": {"type": "integer"}, "next_attempt_at": {"type": "integer"}, "delivery": {"type": "object"}}}}, "next_cursor": {"type": "string", "nullable": true}}},
                "WebhookStats": {"type": "object", "properties": {"webhook_id": {"type": "string"}, "window_secs": {"type": "integer"}, "deliveries": {"type": "integer"}, "attempts": {"type": "integer"}, "succeeded": {"type": "integer"}, "failed": {"type": "integer"}, "dead_lettered": {"type": "integer"}, "success_rate": {"type": "number", "nullable": true}, "avg_latency_ms": {"type": "number"}, "is_active": {"type": "boolean"}}},
                "WebhookList": {"type": "object", "properties": {"webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}}},
                "EventPage": {"type": "object", "properties": {"recovered": {"type": "boolean", "description": "false: the history cannot prove it holds every event after since (nothing returned; reload and go on from epoch/offset/event_id)"}, "epoch": {"type": "string"}, "offset": {"type": "integer", "description": "the history's top offset"}, "event_id": {"type": "string", "nullable": true, "description": "the id of the event at offset"}, "events": {"type": "array", "items": {"type": "object"}, "description": "envelopes, oldest first, each with its offset and epoch"}, "next": {"type": "string", "nullable": true, "description": "since for the next page (a page stops at limit events or RECOVERY_MAX_BYTES of them); null on the last"}}},
                "Health": {"type": "object", "properties": {"status": {"type": "string"}, "store": {"type": "string"}, "version": {"type": "string"}}}
            }
        },
        "paths": {
            "/v1/events": {"get": {
                "summary": "The tenant's retained events after a position (catching up, as a WebSocket subscribe with since does)",
                "security": secured,
                "parameters": [
                    {"name": "since", "in": "query", "schema": {"type": "string", "example": "9f2c4e1a7b3d5c60:41:0199b2c4-1e7a-7c3d-9f2c-4e1a7b3d5c60"}, "description": "<epoch>:<offset>:<id> of the last event received (:<id> optional, judged less strictly), or a page's next; without it: no events, and the position to start from"},
                    {"name": "events", "in": "query", "schema": {"type": "string", "default": "*", "example": "call.*,chat.message"}, "description": "comma-separated topics"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    {"name": "channel", "in": "query", "schema": {"type": "string", "example": "queue:support"}, "description": "read this channel's own history (its own positions) instead of the tenant's; the caller's role must be allowed to subscribe to it (403 otherwise)"}
                ],
                "responses": common(serde_json::Map::from_iter([
                    ("200".to_string(), ok("EventPage")),
                    ("400".to_string(), error("since, events, limit or channel is malformed, or the channel's namespace is not declared (named in `field`)")),
                    ("403".to_string(), error("The channel's namespace does not let the caller subscribe to it (the message names the rule)")),
                ]))
            }, "post": {
                "summary": "Publish an event to the tenant, a user, a connection or a channel; or a batch of events",
                "security": secured,
                "parameters": [{"name": "async", "in": "query", "schema": {"type": "boolean", "default": false}, "description": "queue the fan-out on the events queue and answer 202"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/PublishRequest"}, {"$ref": "#/components/schemas/PublishBatch"}]}}}},
                "responses": common(serde_json::Map::from_iter([
                    ("200".to_string(), json!({"description": "Published (a batch: PublishBatchResponse)", "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/PublishResponse"}, {"$ref": "#/components/schemas/PublishBatchResponse"}]}}}})),
                    ("202".to_string(), json!({"description": "Queued (async=true): event_id, or a batch's event_ids", "content": {"application/json": {"schema": {"type": "object", "properties": {"event_id": {"type": "string"}, "event_ids": {"type": "array", "items": {"type": "string"}}, "queued": {"type": "boolean"}}}}}})),
                    ("400".to_string(), error("Not JSON, or a field is wrong (named in `field`)")),
                    ("403".to_string(), error("The caller's role may not publish this event to this target, or the channel's namespace refuses it (the message names the rule)")),
                    ("413".to_string(), error("Body too large, or an event for an offline user bigger than the tenant's offline budget (nothing published)")),
                    ("429".to_string(), error("rate_limited: over the tenant's requests per second; offline_budget_exceeded: the tenant's offline queues are full (nothing published)")),
                ]))
            }},
            "/v1/stats": {"get": {
                "summary": "Connection counts",
                "security": secured,
                "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("Stats"))]))
            }},
            "/v1/users/{id}/online": {"get": {
                "summary": "Is a user of the caller's tenant online?",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": common(serde_json::Map::from_iter([
                    ("200".to_string(), ok("UserOnline")),
                    ("400".to_string(), error("Not a valid user id")),
                ]))
            }},
            "/v1/presence": {"get": {
                "summary": "Online users of the caller's tenant",
                "security": secured,
                "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("Presence"))]))
            }},
            "/v1/health": {"get": {
                "summary": "Is the state store reachable?",
                "responses": {"200": ok("Health"), "503": {"description": "Store unavailable", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}
            }},
            "/v1/webhooks": {
                "post": {
                    "summary": "Register a webhook (admin); the answer shows its secret, once",
                    "security": secured,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookRequest"}}}},
                    "responses": common(serde_json::Map::from_iter([
                        ("201".to_string(), ok("Webhook")),
                        ("400".to_string(), error("A field is wrong (named in `field`), e.g. a URL the SSRF guard refuses")),
                        ("403".to_string(), error("Not an admin token")),
                    ]))
                },
                "get": {
                    "summary": "The tenant's webhooks, without secrets (admin)",
                    "security": secured,
                    "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("WebhookList")), ("403".to_string(), error("Not an admin token"))]))
                }
            },
            "/v1/webhooks/{id}": {
                "get": {
                    "summary": "One webhook, without secret (admin)",
                    "security": secured,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("Webhook")), ("404".to_string(), error("No such webhook in this tenant"))]))
                },
                "patch": {
                    "summary": "Change a webhook (admin)",
                    "security": secured,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookRequest"}}}},
                    "responses": common(serde_json::Map::from_iter([
                        ("200".to_string(), ok("Webhook")),
                        ("400".to_string(), error("A field is wrong")),
                        ("404".to_string(), error("No such webhook in this tenant")),
                    ]))
                },
                "delete": {
                    "summary": "Remove a webhook (admin)",
                    "security": secured,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": common(serde_json::Map::from_iter([("204".to_string(), json!({"description": "Removed"})), ("404".to_string(), error("No such webhook in this tenant"))]))
                }
            },
            "/v1/webhooks/{id}/test": {"post": {
                "summary": "Send a signed test delivery now and answer its result (admin)",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("WebhookTest")), ("404".to_string(), error("No such webhook in this tenant"))]))
            }},
            "/v1/webhooks/{id}/rotate-secret": {"post": {
                "summary": "Replace the secret; the old one keeps signing for the grace period (admin)",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"secret": {"type": "string"}, "grace_period_secs": {"type": "integer", "minimum": 0, "maximum": 2592000}}}}}},
                "responses": common(serde_json::Map::from_iter([
                    ("200".to_string(), json!({"description": "The new secret, shown once", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}, "secret": {"type": "string"}, "previous_secret_expires_at": {"type": "integer", "nullable": true}}}}}})),
                    ("400".to_string(), error("A field is wrong")),
                    ("404".to_string(), error("No such webhook in this tenant")),
                ]))
            }},
            "/v1/webhooks/{id}/deliveries": {"get": {
                "summary": "The attempt log, newest first, paginated with next_cursor (admin)",
                "security": secured,
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
                    {"name": "before", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"},
                    {"name": "delivery_id", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("DeliveryLog")), ("404".to_string(), error("No such webhook in this tenant"))]))
            }},
            "/v1/webhooks/{id}/stats": {"get": {
                "summary": "Attempts, success rate and average latency over the last hour (admin)",
                "security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": common(serde_json::Map::from_iter([("200".to_string(), ok("WebhookStats")), ("404".to_string(), error("No such webhook in this tenant"))]))
            }},
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry": {"post": {
                "summary": "Queue a logged delivery again, same webhook-id (admin)",
                "security": secured,
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "delivery_id", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "responses": common(serde_json::Map::from_iter([
                    ("202".to_string(), json!({"description": "Queued", "content": {"application/json": {"schema": {"type": "object", "properties": {"delivery_id": {"type": "string"}, "queued": {"type": "boolean"}}}}}})),
                    ("404".to_string(), error("No such webhook or delivery in this tenant")),
                    ("503".to_string(), error("No webhook queue configured, or SQS unavailable")),
                ]))
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}}
            }}
        }
    })
}
