//! API Gateway's gatekeeping, played before anything of ours runs: the
//! authorizer's identity sources, and the account's quotas.
//!
//! - **Identity sources.** A REQUEST authorizer names where the caller's
//!   identity must be (`route.request.header.Sec-WebSocket-Protocol`,
//!   `route.request.querystring.token`, ...). When any of them is missing
//!   or empty, API Gateway answers the handshake 401 without invoking the
//!   authorizer: a client that sends its token elsewhere never gets to our
//!   code. [`IdentitySources`] is that check, configured as the template's
//!   `AuthorizerIdentitySource` parameter is.
//! - **Quotas.** New connections are capped per second per account and
//!   Region (500 by default), and every API call of the account — each
//!   `@connections` post, probe and delete among them — shares a token
//!   bucket of 10,000 requests per second with a burst of 5,000. Beyond
//!   them API Gateway answers 429. [`TokenBucket`] is that bucket: the
//!   emulator has one per quota, off unless configured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;

/// One place an identity must be found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `route.request.header.<name>` (case-insensitive, as HTTP headers are).
    Header(http::HeaderName),
    /// `route.request.querystring.<name>`.
    Query(String),
}

/// The authorizer's identity sources: every one must be present and non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySources(Vec<Source>);

impl IdentitySources {
    /// What the template ships (`AuthorizerIdentitySource`'s default), and
    /// so what `switchboard-local` enforces unless told otherwise: the
    /// token travels in the subprotocol list, as `@switchboard/client`
    /// sends it, and stays out of URLs (and so out of access logs).
    pub const TEMPLATE_DEFAULT: &'static str = "route.request.header.Sec-WebSocket-Protocol";

    /// None: every handshake reaches the authorizer.
    pub fn none() -> Self {
        IdentitySources(Vec::new())
    }

    /// Parses a comma-separated list as API Gateway writes identity
    /// sources (`route.request.header.X`, `route.request.querystring.X`);
    /// an empty string or `none` is no source. Each error names the entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        let list = list.trim();
        if list.is_empty() || list.eq_ignore_ascii_case("none") {
            return Ok(Self::none());
        }
        let mut sources = Vec::new();
        for entry in list.split(',').map(str::trim) {
            let valid_name = |n: &str| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            };
            let source = if let Some(name) = entry.strip_prefix("route.request.header.") {
                let header = http::HeaderName::from_bytes(name.as_bytes()).ok().filter(|_| valid_name(name));
                Source::Header(header.ok_or_else(|| format!("identity source '{entry}': not a header name"))?)
            } else if let Some(name) = entry.strip_prefix("route.request.querystring.") {
                if !valid_name(name) {
                    return Err(format!("identity source '{entry}': not a query string parameter name"));
                }
                Source::Query(name.to_owned())
            } else {
                return Err(format!(
                    "identity source '{entry}' must be route.request.header.<name> or route.request.querystring.<name>"
                ));
            };
            sources.push(source);
        }
        Ok(IdentitySources(sources))
    }

    /// Whether a handshake carries every source, non-empty.
    pub fn present(&self, headers: &HeaderMap, query: &aws_lambda_events::query_map::QueryMap) -> bool {
        self.0.iter().all(|source| match source {
            Source::Header(name) => headers.get_all(name).iter().any(|v| !v.as_bytes().trim_ascii().is_empty()),
            Source::Query(name) => query.first(name).is_some_and(|v| !v.trim().is_empty()),
        })
    }
}

impl std::fmt::Display for IdentitySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self
            .0
            .iter()
            .map(|s| match s {
                Source::Header(h) => format!("route.request.header.{h}"),
                Source::Query(q) => format!("route.request.querystring.{q}"),
            })
            .collect();
        f.write_str(&names.join(","))
    }
}

/// A quota: so many requests per second, with a bucket of `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: requests that may go at once after a quiet spell.
    pub burst: f64,
}

/// A token bucket (API Gateway's throttling algorithm): full at the
/// start, refilled at `per_second`, at most `burst` tokens.
#[derive(Debug)]
pub struct TokenBucket {
    quota: Quota,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(quota: Quota) -> Self {
        TokenBucket { quota, state: Mutex::new((quota.burst, Instant::now())) }
    }

    /// Takes a token; false (throttled) when the bucket is empty.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(*last);
        *tokens = (*tokens + elapsed.as_secs_f64() * self.quota.per_second).min(self.quota.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// API Gateway's account-level quotas, as the emulator plays them (each
/// `None`: not enforced, the default of `make dev`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quotas {
    /// New WebSocket connections per second (AWS: 500 per account and
    /// Region, burst not documented: one second's worth here). Beyond it
    /// the handshake is answered 429.
    pub connects: Option<Quota>,
    /// `@connections` requests (post, get, delete) per second (AWS: the
    /// account's 10,000 per second with a burst of 5,000, shared by every
    /// API of the account and Region). Beyond it: 429 `LimitExceededException`.
    pub connections_api: Option<Quota>,
}

/// How long API Gateway waits for an integration (a Lambda function): 29 s.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// The largest authorizer result API Gateway takes (policy and context, as JSON): 8 KB.
pub const AUTHORIZER_RESULT_MAX_BYTES: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_parse_and_check_as_api_gateway_does() {
        let query = |q: &str| crate::events::query_maps(q).0;
        let mut headers = HeaderMap::new();
        let subprotocol = IdentitySources::parse(IdentitySources::TEMPLATE_DEFAULT).unwrap();
        assert!(!subprotocol.present(&headers, &query("token=abc")), "the token in the URL only: refused");
        headers.insert("sec-websocket-protocol", "switchboard, ey.x.y".parse().unwrap());
        assert!(subprotocol.present(&headers, &query("")));
        assert_eq!(subprotocol.to_string(), "route.request.header.sec-websocket-protocol");

        let by_query = IdentitySources::parse("route.request.querystring.token").unwrap();
        assert!(by_query.present(&headers, &query("token=abc")));
        assert!(!by_query.present(&headers, &query("token=")), "empty counts as missing");
        assert!(!by_query.present(&headers, &query("")));

        let both =
            IdentitySources::parse("route.request.querystring.token, route.request.header.Authorization").unwrap();
        assert!(!both.present(&headers, &query("token=abc")), "every source must be there");
        assert!(IdentitySources::parse("none").unwrap().present(&HeaderMap::new(), &query("")));
        for bad in ["route.request.header.", "stageVariables.x", "route.request.querystring.a b", "token"] {
            let e = IdentitySources::parse(bad).unwrap_err();
            assert!(e.contains(bad.trim()), "{e}");
        }
    }

    #[test]
    fn a_token_bucket_allows_its_burst_then_its_rate() {
        let bucket = TokenBucket::new(Quota { per_second: 1000.0, burst: 5.0 });
        let allowed = (0..20).filter(|_| bucket.take()).count();
        assert!((5..=6).contains(&allowed), "the burst, and what refilled meanwhile: {allowed}");
        std::thread::sleep(Duration::from_millis(20));
        let refilled = (0..20).filter(|_| bucket.take()).count();
        assert_eq!(refilled, 5, "refilled up to the burst only");
    }
}
