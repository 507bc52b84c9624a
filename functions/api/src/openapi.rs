//! The OpenAPI 3 description of the HTTP API, served at `/v1/openapi.json`.
//! A test checks that every route in [`crate::ROUTES`] is described here and
//! nothing else is.

use serde_json::{Value, json};
use switchboard::event::EventType;

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The document.
pub fn document() -> Value {
    let event_types: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
    let secured = json!([{"bearer": []}]);
    let common = |mut responses: serde_json::Map<String, Value>| {
        responses.insert("401".into(), error("Missing or invalid token"));
        responses.insert("429".into(), error("The tenant's request budget for this second is spent"));
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
                        "code": {"type": "string", "enum": ["invalid_json", "invalid_field", "unauthorized", "forbidden", "not_found", "method_not_allowed", "payload_too_large", "rate_limited", "unavailable"]},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "The bad field, for invalid_field"}
                    }
                },
                "Target": {
                    "description": "Who receives the event, inside the caller's tenant. Absent: the whole tenant.",
                    "oneOf": [
                        {"type": "object", "required": ["tenant"], "properties": {"tenant": {"type": "boolean", "enum": [true]}}, "additionalProperties": false},
                        {"type": "object", "required": ["user"], "properties": {"user": {"type": "string"}}, "additionalProperties": false},
                        {"type": "object", "required": ["connection"], "properties": {"connection": {"type": "string"}}, "additionalProperties": false}
                    ]
                },
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
                        "failed": {"type": "integer"}, "queued_offline": {"type": "integer"}
                    }
                },
                "PublishResponse": {"type": "object", "properties": {"event_id": {"type": "string"}, "report": {"$ref": "#/components/schemas/Report"}}},
                "Stats": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "tenant_connections": {"type": "integer"}, "total_connections": {"type": "integer"}}},
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
                        "secret": {"type": "string", "description": "only in the answer to create"},
                        "is_active": {"type": "boolean"}, "retry_count": {"type": "integer"}, "timeout": {"type": "integer"},
                        "created_at": {"type": "integer"}, "updated_at": {"type": "integer"}
                    }
                },
                "WebhookList": {"type": "object", "properties": {"webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}}},
                "Health": {"type": "object", "properties": {"status": {"type": "string"}, "store": {"type": "string"}, "version": {"type": "string"}}}
            }
        },
        "paths": {
            "/v1/events": {"post": {
                "summary": "Publish an event to the tenant, a user or a connection",
                "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PublishRequest"}}}},
                "responses": common(serde_json::Map::from_iter([
                    ("200".to_string(), ok("PublishResponse")),
                    ("400".to_string(), error("Not JSON, or a field is wrong (named in `field`)")),
                    ("403".to_string(), error("The caller's role may not publish this event to this target")),
                    ("413".to_string(), error("Body too large")),
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
            "/v1/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}}
            }}
        }
    })
}
