//! The development console at `/console` on the HTTP API's address.
//!
//! One page (`local/console/`) built on the JavaScript client
//! (`clients/js/src/index.js`, served as `/console/switchboard.js`): it
//! signs in with a token, then uses the same WebSocket protocol and HTTP
//! API as every other client, so it sees exactly what its token's tenant
//! and role may see; there is no console-only data route. The files are
//! compiled into the binary, so serving them needs no build step and no
//! files beside the binary.
//!
//! What the emulator adds for the page:
//! - `GET /console/config.json`: where the gateway is (the host the page was
//!   loaded from, the gateway's port and stage) and whether tokens can be
//!   minted here (the event catalogue comes from `/v1/openapi.json`, as
//!   for any client of the HTTP API);
//! - `POST /console/token` `{tenant, user, role}`: a token signed with the
//!   development secret, only while the emulator runs with it. Anybody can
//!   sign such a token with the secret the banner prints, so minting gives
//!   nothing away; with a configured `JWT_SECRET` or a public key the page
//!   asks for a token instead.
//!
//! With `--production` none of this is routed (the HTTP API answers 404).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard::ids::{Identity, Role};

/// The page and its parts: path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    ("/console/", "text/html; charset=utf-8", include_str!("../console/index.html")),
    ("/console/console.js", "text/javascript; charset=utf-8", include_str!("../console/console.js")),
    ("/console/console.css", "text/css; charset=utf-8", include_str!("../console/console.css")),
    ("/console/switchboard.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/src/index.js")),
];

/// Only what the page itself loads and connects to: its own scripts and
/// styles, the HTTP API on its origin, and WebSockets (the gateway is on
/// another port). No inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The longest lifetime a minted token may ask for: a day.
const MAX_MINT_TTL_SECS: u64 = 86_400;

/// What the console may do beyond serving its files.
#[derive(Clone, Debug, Default)]
pub struct ConsoleSettings {
    /// Signs development tokens for the page; `None`: the page asks for one.
    pub mint: Option<Minter>,
}

/// An HS256 signer for development tokens, with the issuer and audience
/// the emulator checks, when configured.
#[derive(Clone)]
pub struct Minter {
    /// The development secret.
    pub secret: Vec<u8>,
    /// `iss`, when `JWT_ISSUER` is set.
    pub issuer: Option<String>,
    /// `aud`, when `JWT_AUDIENCE` is set.
    pub audience: Option<String>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").field("issuer", &self.issuer).field("audience", &self.audience).finish()
    }
}

#[derive(Clone)]
struct ConsoleState {
    mint: Option<Minter>,
    ws_port: u16,
    stage: String,
}

/// The console's routes, to merge into the HTTP API's router.
pub fn router(settings: ConsoleSettings, ws_port: u16, stage: String) -> Router {
    let mut router = Router::new();
    for &(path, content_type, body) in FILES {
        router = router.route(path, get(move || async move { page(content_type, body) }));
    }
    router
        .route("/console", get(to_folder))
        .route("/console/config.json", get(config))
        .route("/console/token", post(mint))
        .with_state(ConsoleState { mint: settings.mint, ws_port, stage })
}

/// `/console` → `/console/`, with its query (`?token=`): the page loads
/// its parts by relative paths, as it does when shipped as static files.
async fn to_folder(uri: axum::http::Uri) -> Response {
    let location = match uri.query() {
        Some(q) => format!("/console/?{q}"),
        None => "/console/".to_owned(),
    };
    axum::response::Redirect::permanent(&location).into_response()
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /console/config.json`: the gateway on the host the page came from
/// (so a page opened as `localhost`, `127.0.0.1` or a container's address
/// all reach it), and whether `/console/token` mints.
async fn config(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map_or_else(|| "127.0.0.1".to_owned(), |a| a.host().to_owned());
    let ws_url = format!("ws://{host}:{}/{}", state.ws_port, state.stage);
    Json(json!({"ws_url": ws_url, "api_url": "", "mint": state.mint.is_some()})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    tenant: String,
    user: String,
    role: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The channels the token grants: a list, or one string of patterns separated by commas.
    #[serde(default)]
    channels: Option<serde_json::Value>,
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// `POST /console/token`: a development token, or why not.
async fn mint(State(state): State<ConsoleState>, body: axum::body::Bytes) -> Response {
    let Some(minter) = &state.mint else {
        return refuse(
            StatusCode::FORBIDDEN,
            "minting_disabled",
            "this emulator signs with a configured key: paste a token (switchboard-local token --help)".into(),
        );
    };
    let request: MintRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("expected {{\"tenant\",\"user\",\"role\"}}: {e}"),
            );
        }
    };
    let identity = match (request.tenant.parse(), request.user.parse(), request.role.parse::<Role>()) {
        (Ok(tenant_id), Ok(user_id), Ok(role)) => Identity::new(tenant_id, user_id, role),
        (Err(e), _, _) => return refuse(StatusCode::BAD_REQUEST, "invalid_field", format!("tenant: {e}")),
        (_, Err(e), _) => return refuse(StatusCode::BAD_REQUEST, "invalid_field", format!("user: {e}")),
        (_, _, Err(e)) => return refuse(StatusCode::BAD_REQUEST, "invalid_field", format!("role: {e}")),
    };
    let grants = match &request.channels {
        None | Some(serde_json::Value::Null) => Ok(switchboard::channel::Grants::default()),
        Some(serde_json::Value::String(list)) => {
            switchboard::channel::Grants::parse(list.split(',').map(str::trim).filter(|p| !p.is_empty()))
        }
        Some(serde_json::Value::Array(items)) => {
            switchboard::channel::Grants::parse(items.iter().map(|v| v.as_str().unwrap_or("")))
        }
        Some(_) => Err(switchboard::channel::InvalidChannel("channels: a list of channel patterns".into())),
    };
    let identity = match grants {
        Ok(channels) => Identity { channels, ..identity },
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "invalid_field", e.to_string()),
    };
    let ttl_secs = request.ttl_secs.unwrap_or(8 * 3600);
    if ttl_secs == 0 || ttl_secs > MAX_MINT_TTL_SECS {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("ttl_secs: must be 1 to {MAX_MINT_TTL_SECS}, not {ttl_secs}"),
        );
    }
    let token = switchboard::auth::mint_hs256_for(
        &minter.secret,
        &identity,
        ttl_secs,
        minter.issuer.as_deref(),
        minter.audience.as_deref(),
    );
    Json(json!({"token": token, "expires_in": ttl_secs})).into_response()
}
