//! The events API Gateway sends, built field for field.
//!
//! What a function sees locally must be what it sees in AWS: the same
//! `aws_lambda_events` types with the same fields filled — `connectionId`,
//! `routeKey`, `eventType`, `messageId`, `domainName`, `stage`, `apiId`,
//! `connectedAt`, `requestTimeEpoch`, `requestTime`, `identity`, the
//! authorizer context on every event after `$connect`, headers and query
//! string on `$connect`, `disconnectStatusCode` / `disconnectReason` on
//! `$disconnect`.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerRequestTypeRequestIdentity,
    ApiGatewayWebsocketProxyRequest,
};
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// What every event of one emulator shares.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    /// `host:port` of the WebSocket listener (the `domainName`).
    pub domain_name: String,
    /// The stage, e.g. `local`.
    pub stage: String,
    /// A fixed, API-Gateway-like id for this emulator instance.
    pub api_id: String,
}

/// What API Gateway knows about one connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// API-Gateway-like id: 16 URL-safe base64 characters.
    pub id: String,
    /// Unix milliseconds.
    pub connected_at: i64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// The authorizer's context, attached to every event after `$connect`.
    pub authorizer: HashMap<String, Value>,
}

/// `bytes` random bytes, URL-safe base64. From the thread's userspace
/// generator (ChaCha, seeded by the OS): one `getrandom` syscall per id
/// showed in a connection storm's profile.
fn random_id(bytes: usize) -> String {
    let raw: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE.encode(&raw[..bytes.min(16)])
}

/// A new connection id, shaped like API Gateway's (`PJUgRcLgDoECFjQ=`) but
/// from the URL-safe alphabet.
pub fn new_connection_id() -> String {
    random_id(11)
}

/// A new request or message id.
pub fn new_request_id() -> String {
    random_id(11)
}

/// A new `apiId`: ten lowercase letters and digits.
pub fn new_api_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// `26/Nov/2026:09:15:42 +0000`, API Gateway's `requestTime`.
pub fn request_time(epoch_ms: i64) -> String {
    let format = time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// `2026-11-26T09:15:42.112Z`, the format of `@connections` GET.
pub fn iso8601(epoch_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A handshake's query string as API Gateway's two maps: the single-value
/// map keeps the last value of a repeated key.
pub fn query_maps(query: &str) -> (aws_lambda_events::query_map::QueryMap, aws_lambda_events::query_map::QueryMap) {
    let mut multi: HashMap<String, Vec<String>> = HashMap::new();
    let mut single: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        single.insert(k.clone().into_owned(), v.clone().into_owned());
        multi.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    (single.into(), multi.into())
}

/// The REQUEST authorizer event for `$connect`: the handshake's headers
/// and query string ([`query_maps`]) move into it, and from it into the
/// `$connect` event ([`connect`]), so a handshake copies them once.
pub fn authorizer_request(
    gw: &ApiInfo,
    conn: &ConnectionInfo,
    headers: HeaderMap,
    query: (aws_lambda_events::query_map::QueryMap, aws_lambda_events::query_map::QueryMap),
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let now = switchboard::time::now_millis();
    let mut e = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    e.other.insert("type".into(), json!("REQUEST"));
    e.method_arn = Some(format!("arn:aws:execute-api:local:000000000000:{}/{}/$connect", gw.api_id, gw.stage));
    e.multi_value_headers = headers.clone();
    e.headers = headers;
    (e.query_string_parameters, e.multi_value_query_string_parameters) = query;
    let rc = &mut e.request_context;
    rc.stage = Some(gw.stage.clone());
    rc.request_id = Some(new_request_id());
    rc.apiid = Some(gw.api_id.clone());
    let mut identity = ApiGatewayCustomAuthorizerRequestTypeRequestIdentity::default();
    identity.source_ip = Some(conn.source_ip.clone());
    if let Some(ua) = &conn.user_agent {
        identity.other.insert("userAgent".into(), json!(ua));
    }
    rc.identity = Some(identity);
    for (k, v) in [
        ("routeKey", json!("$connect")),
        ("eventType", json!("CONNECT")),
        ("messageDirection", json!("IN")),
        ("connectionId", json!(conn.id)),
        ("connectedAt", json!(conn.connected_at)),
        ("domainName", json!(gw.domain_name)),
        ("requestTimeEpoch", json!(now)),
        ("requestTime", json!(request_time(now))),
        ("extendedRequestId", json!(new_request_id())),
    ] {
        rc.other.insert(k.into(), v);
    }
    e
}

/// Common part of the three route events.
fn route_event(
    gw: &ApiInfo,
    conn: &ConnectionInfo,
    route_key: &str,
    event_type: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let now = switchboard::time::now_millis();
    let mut e = ApiGatewayWebsocketProxyRequest::default();
    let rc = &mut e.request_context;
    rc.route_key = Some(route_key.to_owned());
    rc.event_type = Some(event_type.to_owned());
    rc.message_direction = Some("IN".into());
    rc.stage = Some(gw.stage.clone());
    rc.apiid = Some(gw.api_id.clone());
    rc.domain_name = Some(gw.domain_name.clone());
    rc.connection_id = Some(conn.id.clone());
    rc.connected_at = conn.connected_at;
    rc.request_time_epoch = now;
    rc.request_time = Some(request_time(now));
    let request_id = new_request_id();
    rc.extended_request_id = Some(request_id.clone());
    rc.request_id = Some(request_id);
    rc.identity.source_ip = Some(conn.source_ip.clone());
    rc.identity.user_agent = conn.user_agent.clone();
    rc.authorizer.fields = conn.authorizer.clone();
    e
}

/// `$connect`, with the handshake's headers and query string taken from
/// its authorizer event, plus the `X-Forwarded-*` headers API Gateway's
/// front end adds (ours is plain http).
pub fn connect(
    gw: &ApiInfo,
    conn: &ConnectionInfo,
    authorized: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = route_event(gw, conn, "$connect", "CONNECT");
    (e.headers, e.multi_value_headers) = (authorized.headers, authorized.multi_value_headers);
    let forwarded = HeaderValue::from_str(&conn.source_ip).ok();
    for headers in [&mut e.headers, &mut e.multi_value_headers] {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Some(ip) = &forwarded {
            headers.insert("x-forwarded-for", ip.clone());
        }
    }
    (e.query_string_parameters, e.multi_value_query_string_parameters) =
        (authorized.query_string_parameters, authorized.multi_value_query_string_parameters);
    e.is_base64_encoded = false;
    e
}

/// A client message on `route_key`. Binary frames arrive base64-encoded.
pub fn message(
    gw: &ApiInfo,
    conn: &ConnectionInfo,
    route_key: &str,
    body: String,
    is_base64_encoded: bool,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = route_event(gw, conn, route_key, "MESSAGE");
    e.request_context.message_id = Some(new_request_id());
    e.body = Some(body);
    e.is_base64_encoded = is_base64_encoded;
    e
}

/// `$disconnect`, with the close code and reason.
pub fn disconnect(gw: &ApiInfo, conn: &ConnectionInfo, status: u16, reason: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut e = route_event(gw, conn, "$disconnect", "DISCONNECT");
    e.request_context.disconnect_status_code = Some(i64::from(status));
    e.request_context.disconnect_reason = Some(reason.to_owned());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let id = new_connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='), "{id}");
        assert!(switchboard::ids::ConnectionId::parse(&id).is_ok());
        assert_ne!(new_connection_id(), id);
        assert_eq!(new_api_id().len(), 10);
    }

    #[test]
    fn times_have_api_gateway_formats() {
        assert_eq!(request_time(1_795_684_542_112), "26/Nov/2026:09:15:42 +0000");
        assert_eq!(iso8601(1_795_684_542_112), "2026-11-26T09:15:42.112Z");
    }
}
