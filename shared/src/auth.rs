//! Who is calling: JWT verification, token extraction and the Origin check.
//!
//! Tokens carry `sub` (the user), `tenant_id`, `role` and `exp` (required);
//! `iss` and `aud` are checked when configured. HS256 uses a shared secret;
//! RS256 and ES256 a PEM public key, so an identity provider can sign tokens
//! without sharing a secret with us.
//!
//! A browser cannot set headers on a WebSocket handshake, so a token is
//! looked for in three places, in this order: `Authorization: Bearer`, the
//! `token` query parameter, and `Sec-WebSocket-Protocol` (a JWT among the
//! offered subprotocols, e.g. `new WebSocket(url, ["switchboard", jwt])`).
//!
//! Every refusal has its own [`AuthError`] variant, so logs say *why* a
//! client was turned away; what the client sees is only 401 or 403.

use std::collections::HashSet;

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use url::Url;

use crate::channel::Grants;
use crate::config::{ConfigError, non_empty, parse_or, positive};
use crate::event::{EventType, Target};
use crate::ids::{Identity, Role, TenantId, UserId};

/// Every variable [`AuthConfig`] reads (the authorizer and the HTTP API).
pub const AUTH_VARIABLES: &[&str] = &[
    "ALLOWED_ORIGINS",
    "JWT_ALGORITHM",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_LEEWAY_SECS",
    "JWT_MAX_LIFETIME_SECS",
    "JWT_PUBLIC_KEY",
    "JWT_SECRET",
];

/// How tokens are verified.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hs256Secret(Vec<u8>),
    /// RS256 with a PEM public key.
    Rs256Pem(Vec<u8>),
    /// ES256 with a PEM public key.
    Es256Pem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    // Never print key material, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256Secret(_) => "Hs256Secret(..)",
            JwtKey::Rs256Pem(_) => "Rs256Pem(..)",
            JwtKey::Es256Pem(_) => "Es256Pem(..)",
        })
    }
}

/// Token verification settings, needed by the authorizer and the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The verification key and its algorithm.
    pub key: JwtKey,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Longest a token may still be valid for (`exp` − now): a token that
    /// claims to live longer is refused, however well signed.
    pub max_lifetime_secs: u64,
    /// Allowed browser origins; empty allows all.
    pub allowed_origins: Vec<String>,
}

impl AuthConfig {
    /// HS256 with `secret` and no other checks (tests and the emulator).
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        AuthConfig {
            key: JwtKey::Hs256Secret(secret.into()),
            issuer: None,
            audience: None,
            leeway_secs: 30,
            max_lifetime_secs: 86_400,
            allowed_origins: vec![],
        }
    }

    /// Reads the `JWT_*` and `ALLOWED_ORIGINS` variables from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the auth variables through `get`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret = non_empty(get, "JWT_SECRET");
        let public_key = non_empty(get, "JWT_PUBLIC_KEY");
        let algorithm = non_empty(get, "JWT_ALGORITHM").map(|a| a.to_ascii_uppercase());
        let key = match (secret, public_key) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("JWT_SECRET", "and JWT_PUBLIC_KEY are both set; set exactly one"));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "is not set (set JWT_SECRET for HS256, or JWT_PUBLIC_KEY for RS256/ES256)",
                ));
            }
            (Some(secret), None) => {
                if let Some(a) = algorithm.as_deref().filter(|a| *a != "HS256") {
                    return Err(ConfigError::new(
                        "JWT_ALGORITHM",
                        format!("is {a}, but JWT_SECRET only works with HS256"),
                    ));
                }
                if secret.len() < 32 {
                    return Err(ConfigError::new(
                        "JWT_SECRET",
                        format!("is {} bytes; at least 32 are needed for HS256", secret.len()),
                    ));
                }
                JwtKey::Hs256Secret(secret.into_bytes())
            }
            (None, Some(pem)) => {
                // Accept literal "\n" so a PEM fits in one env line.
                let pem = pem.replace("\\n", "\n").into_bytes();
                let detected = detect_pem_algorithm(&pem)?;
                match algorithm.as_deref() {
                    None => detected,
                    Some("RS256") => JwtKey::Rs256Pem(pem),
                    Some("ES256") => JwtKey::Es256Pem(pem),
                    Some(other) => {
                        return Err(ConfigError::new(
                            "JWT_ALGORITHM",
                            format!("is {other}; expected RS256 or ES256 with JWT_PUBLIC_KEY"),
                        ));
                    }
                }
            }
        };
        let allowed_origins = match non_empty(get, "ALLOWED_ORIGINS") {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|o| {
                    let url = Url::parse(o).map_err(|_| {
                        ConfigError::new(
                            "ALLOWED_ORIGINS",
                            format!("entry '{o}' is not an origin like https://app.example.com"),
                        )
                    })?;
                    if !matches!(url.scheme(), "http" | "https")
                        || url.host_str().is_none()
                        || url.path() != "/"
                        || url.query().is_some()
                    {
                        return Err(ConfigError::new(
                            "ALLOWED_ORIGINS",
                            format!("entry '{o}' is not an origin like https://app.example.com"),
                        ));
                    }
                    Ok(o.trim_end_matches('/').to_ascii_lowercase())
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(AuthConfig {
            key,
            issuer: non_empty(get, "JWT_ISSUER"),
            audience: non_empty(get, "JWT_AUDIENCE"),
            leeway_secs: parse_or(get, "JWT_LEEWAY_SECS", 30u64, "a number of seconds")?,
            max_lifetime_secs: positive(get, "JWT_MAX_LIFETIME_SECS", 86_400)?,
            allowed_origins,
        })
    }
}

fn detect_pem_algorithm(pem: &[u8]) -> Result<JwtKey, ConfigError> {
    let bad = || ConfigError::new("JWT_PUBLIC_KEY", "is not a PEM-encoded RSA or EC (P-256) public key");
    if jsonwebtoken::DecodingKey::from_rsa_pem(pem).is_ok() {
        Ok(JwtKey::Rs256Pem(pem.to_vec()))
    } else if jsonwebtoken::DecodingKey::from_ec_pem(pem).is_ok() {
        Ok(JwtKey::Es256Pem(pem.to_vec()))
    } else {
        Err(bad())
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            "supervisor" => Ok(Role::Supervisor),
            "agent" => Ok(Role::Agent),
            other => Err(AuthError::InvalidRole(other.to_owned())),
        }
    }
}

impl Role {
    /// May this role publish `event` to `target`? Back-end callers (`admin`,
    /// `service`) may publish anything; clients (`supervisor`, `agent`) may
    /// send chat messages, typing and read receipts to a user or a
    /// connection of their tenant. The error says why not.
    pub fn may_publish(self, event: EventType, target: &Target) -> Result<(), String> {
        match self {
            Role::Admin | Role::Service => Ok(()),
            Role::Supervisor | Role::Agent => {
                if !matches!(event, EventType::ChatMessage | EventType::ChatTyping | EventType::ChatRead) {
                    return Err(format!(
                        "the {} role may publish only chat.message, chat.typing and chat.read, not {event}",
                        self.as_str()
                    ));
                }
                if matches!(target, Target::Tenant) {
                    return Err(format!(
                        "the {} role may send {event} to a user or a connection, not to the whole tenant",
                        self.as_str()
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the header, the query string or the subprotocols.
    #[error("no token: send Authorization: Bearer <jwt>, ?token=<jwt> or a Sec-WebSocket-Protocol entry")]
    MissingToken,
    /// Not a JWT, or its claims are not the right types.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the configured key.
    #[error("bad signature")]
    BadSignature,
    /// Signed with an algorithm other than the configured one.
    #[error("token algorithm not accepted (expected {0})")]
    WrongAlgorithm(&'static str),
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` is further away than the longest lifetime accepted.
    #[error("token lifetime too long: exp is more than {0} s away (JWT_MAX_LIFETIME_SECS)")]
    LifetimeTooLong(u64),
    /// A required claim is absent.
    #[error("missing claim '{0}'")]
    MissingClaim(&'static str),
    /// `tenant_id` absent.
    #[error("missing tenant: the token has no tenant_id claim")]
    MissingTenant,
    /// `tenant_id` or `sub` present but not a valid id.
    #[error("{0}")]
    InvalidClaim(String),
    /// `role` is not one of admin, service, supervisor, agent.
    #[error("unknown role '{0}' (expected admin, service, supervisor or agent)")]
    InvalidRole(String),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The browser's Origin is not on the allowlist.
    #[error("origin '{0}' not allowed")]
    OriginNotAllowed(String),
}

/// The claims Switchboard reads. Optional here so that a missing claim gets
/// its own error rather than a generic JSON one.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Claims {
    /// User id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Tenant id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Role name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one, or several (RFC 7519 allows both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Not before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The channels the token grants, as channels or patterns
    /// (`["queue:support", "team:east", "chat:*"]`): what a namespace's
    /// `granted` rule admits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// The `aud` claim: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "switchboard"`.
    One(String),
    /// `"aud": ["switchboard", "crm"]`.
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(aud: &str) -> Self {
        Audience::One(aud.to_owned())
    }
}

/// Verifies tokens and origins; built once per cold start.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: &'static str,
    max_lifetime_secs: u64,
    allowed_origins: HashSet<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier; fails when the key cannot be used.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let bad_key = |_| ConfigError::new("JWT_PUBLIC_KEY", "could not be loaded as a PEM public key");
        let (key, algorithm, name) = match &config.key {
            JwtKey::Hs256Secret(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256, "HS256"),
            JwtKey::Rs256Pem(pem) => (DecodingKey::from_rsa_pem(pem).map_err(bad_key)?, Algorithm::RS256, "RS256"),
            JwtKey::Es256Pem(pem) => (DecodingKey::from_ec_pem(pem).map_err(bad_key)?, Algorithm::ES256, "ES256"),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely
        // "not different" when present.
        let mut required = vec!["exp"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            key,
            validation,
            algorithm: name,
            max_lifetime_secs: config.max_lifetime_secs,
            allowed_origins: config.allowed_origins.iter().cloned().collect(),
        })
    }

    /// Verifies `token` and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm(self.algorithm),
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::MissingClaim("exp"),
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
            _ => AuthError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let longest = self.max_lifetime_secs + self.validation.leeway;
        if claims.exp.is_some_and(|exp| exp.saturating_sub(now) > longest) {
            return Err(AuthError::LifetimeTooLong(self.max_lifetime_secs));
        }
        let tenant = claims.tenant_id.ok_or(AuthError::MissingTenant)?;
        let tenant_id =
            TenantId::parse(tenant).map_err(|e| AuthError::InvalidClaim(format!("tenant_id claim: {e}")))?;
        let sub = claims.sub.ok_or(AuthError::MissingClaim("sub"))?;
        let user_id = UserId::parse(sub).map_err(|e| AuthError::InvalidClaim(format!("sub claim: {e}")))?;
        let role = claims.role.ok_or(AuthError::MissingClaim("role"))?.parse()?;
        let channels = match &claims.channels {
            None => Grants::default(),
            Some(list) => {
                Grants::parse(list.iter().map(String::as_str)).map_err(|e| AuthError::InvalidClaim(e.to_string()))?
            }
        };
        Ok(Identity { channels, ..Identity::new(tenant_id, user_id, role) })
    }

    /// Checks a browser's `Origin` against the allowlist. An empty allowlist
    /// allows everything; a request without `Origin` is not from a browser
    /// (which always sends one) and is allowed — the token still has to verify.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<(), AuthError> {
        match origin {
            Some(o) if !self.allowed_origins.is_empty() => {
                let normalised = o.trim().trim_end_matches('/').to_ascii_lowercase();
                if self.allowed_origins.contains(&normalised) {
                    Ok(())
                } else {
                    Err(AuthError::OriginNotAllowed(o.to_owned()))
                }
            }
            _ => Ok(()),
        }
    }
}

/// Where a token was found; `Subprotocol` matters because `$connect` must
/// then answer with a `Sec-WebSocket-Protocol` the browser offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// `?token=`.
    Query,
    /// An entry of `Sec-WebSocket-Protocol`.
    Subprotocol,
}

/// Looks for a token in the header, the query string, then the subprotocols.
pub fn extract_token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<(&'a str, TokenSource)> {
    if let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some((token, TokenSource::Header));
    }
    if let Some(token) = query_token.map(str::trim).filter(|t| !t.is_empty()) {
        return Some((token, TokenSource::Query));
    }
    offered_subprotocols(headers).find(|p| looks_like_jwt(p)).map(|t| (t, TokenSource::Subprotocol))
}

/// The subprotocols a client offered, in order.
pub fn offered_subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The subprotocol to answer with: the first offered one that is not a
/// token (`switchboard`, `bearer`, ...), else the only one offered. A
/// browser that offered protocols fails the handshake unless one comes back.
pub fn selected_subprotocol(headers: &HeaderMap) -> Option<&str> {
    let mut offered = offered_subprotocols(headers).peekable();
    let first = *offered.peek()?;
    offered.find(|p| !looks_like_jwt(p)).or(Some(first))
}

fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Signs an HS256 token for `identity`, valid for `ttl_secs`. For the
/// emulator's `token` command and for tests; production tokens come from
/// the platform's identity provider.
pub fn mint_hs256(secret: &[u8], identity: &Identity, ttl_secs: u64) -> String {
    mint_hs256_for(secret, identity, ttl_secs, None, None)
}

/// [`mint_hs256`] with the `iss` and `aud` a verifier requires (the
/// emulator's `token` command, when `JWT_ISSUER` / `JWT_AUDIENCE` are set).
pub fn mint_hs256_for(
    secret: &[u8],
    identity: &Identity,
    ttl_secs: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> String {
    let claims = Claims {
        sub: Some(identity.user_id.to_string()),
        tenant_id: Some(identity.tenant_id.to_string()),
        role: Some(identity.role.as_str().to_owned()),
        exp: Some(jsonwebtoken::get_current_timestamp() + ttl_secs),
        iss: issuer.map(str::to_owned),
        aud: audience.map(Into::into),
        channels: (!identity.channels.is_empty())
            .then(|| identity.channels.patterns().iter().map(|p| p.to_string()).collect()),
        ..Claims::default()
    };
    sign(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
}

/// Signs arbitrary claims (tests use it to build every kind of bad token).
pub fn sign(header: &Header, claims: &Claims, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("claims are plain strings and numbers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup_from(map: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
        move |name| map.get(name).cloned()
    }

    fn auth(pairs: &[(&'static str, &str)]) -> Result<AuthConfig, ConfigError> {
        let map = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        AuthConfig::from_lookup(&lookup_from(map))
    }

    #[test]
    fn auth_config_reads_exactly_auth_variables() {
        use std::cell::RefCell;
        let asked = RefCell::new(std::collections::BTreeSet::new());
        let record = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            (name == "JWT_SECRET").then(|| "x".repeat(32))
        };
        AuthConfig::from_lookup(&record).unwrap();
        let auth: Vec<String> = asked.borrow().iter().cloned().collect();
        assert_eq!(auth, AUTH_VARIABLES, "AuthConfig reads exactly AUTH_VARIABLES");
    }

    #[test]
    fn auth_errors() {
        let long = "s".repeat(32);
        assert!(auth(&[]).unwrap_err().to_string().starts_with("JWT_SECRET is not set"));
        assert!(auth(&[("JWT_SECRET", "short")]).unwrap_err().to_string().contains("at least 32"));
        assert!(auth(&[("JWT_SECRET", &long), ("JWT_PUBLIC_KEY", "x")]).unwrap_err().to_string().contains("both set"));
        assert!(
            auth(&[("JWT_SECRET", &long), ("JWT_ALGORITHM", "RS256")])
                .unwrap_err()
                .to_string()
                .starts_with("JWT_ALGORITHM")
        );
        assert!(
            auth(&[("JWT_PUBLIC_KEY", "not a pem")])
                .unwrap_err()
                .to_string()
                .starts_with("JWT_PUBLIC_KEY is not a PEM")
        );
        assert!(
            auth(&[("JWT_SECRET", &long), ("ALLOWED_ORIGINS", "app.example.com")])
                .unwrap_err()
                .to_string()
                .starts_with("ALLOWED_ORIGINS entry")
        );
        let ok = auth(&[("JWT_SECRET", &long), ("ALLOWED_ORIGINS", "https://App.example.com/, http://localhost:5173")])
            .unwrap();
        assert_eq!(ok.allowed_origins, vec!["https://app.example.com", "http://localhost:5173"]);
        assert!(!format!("{ok:?}").contains(&long), "debug output must not show the secret");
    }

    #[test]
    fn public_key_algorithm_is_detected_from_the_pem() {
        let rsa = include_str!("../testdata/rsa-public.pem");
        let ec = include_str!("../testdata/ec-public.pem");
        assert!(matches!(auth(&[("JWT_PUBLIC_KEY", rsa)]).unwrap().key, JwtKey::Rs256Pem(_)));
        assert!(matches!(auth(&[("JWT_PUBLIC_KEY", ec)]).unwrap().key, JwtKey::Es256Pem(_)));
        // A PEM squeezed onto one line with literal \n, as env files do.
        let one_line = ec.replace('\n', "\\n");
        assert!(matches!(auth(&[("JWT_PUBLIC_KEY", &one_line)]).unwrap().key, JwtKey::Es256Pem(_)));
        let err = auth(&[("JWT_PUBLIC_KEY", rsa), ("JWT_ALGORITHM", "HS512")]).unwrap_err();
        assert!(err.to_string().starts_with("JWT_ALGORITHM is HS512"), "{err}");
    }
    use http::HeaderValue;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        Verifier::new(&AuthConfig::hs256(SECRET)).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            sub: Some("42".into()),
            tenant_id: Some("t1".into()),
            role: Some("agent".into()),
            exp: Some(jsonwebtoken::get_current_timestamp() + 60),
            ..Claims::default()
        }
    }

    fn hs(c: &Claims) -> String {
        sign(&Header::new(Algorithm::HS256), c, &EncodingKey::from_secret(SECRET))
    }

    #[test]
    fn valid_token_gives_identity() {
        let id = verifier().verify(&hs(&claims())).unwrap();
        assert_eq!(id.tenant_id.as_str(), "t1");
        assert_eq!(id.user_id.as_str(), "42");
        assert_eq!(id.role, Role::Agent);
    }

    #[test]
    fn each_failure_has_its_reason() {
        let v = verifier();
        let expired = Claims { exp: Some(jsonwebtoken::get_current_timestamp() - 3600), ..claims() };
        assert_eq!(v.verify(&hs(&expired)), Err(AuthError::Expired));
        let other_key = sign(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        );
        assert_eq!(v.verify(&other_key), Err(AuthError::BadSignature));
        assert_eq!(v.verify(&hs(&Claims { tenant_id: None, ..claims() })), Err(AuthError::MissingTenant));
        assert_eq!(v.verify(&hs(&Claims { sub: None, ..claims() })), Err(AuthError::MissingClaim("sub")));
        assert_eq!(v.verify(&hs(&Claims { role: None, ..claims() })), Err(AuthError::MissingClaim("role")));
        assert_eq!(v.verify(&hs(&Claims { exp: None, ..claims() })), Err(AuthError::MissingClaim("exp")));
        assert_eq!(
            v.verify(&hs(&Claims { role: Some("root".into()), ..claims() })),
            Err(AuthError::InvalidRole("root".into()))
        );
        assert!(
            matches!(v.verify(&hs(&Claims { tenant_id: Some("a:b".into()), ..claims() })), Err(AuthError::InvalidClaim(m)) if m.contains("tenant"))
        );
        assert!(matches!(v.verify("not-a-token"), Err(AuthError::Malformed(_))));
        let hs384 = sign(&Header::new(Algorithm::HS384), &claims(), &EncodingKey::from_secret(SECRET));
        assert_eq!(v.verify(&hs384), Err(AuthError::WrongAlgorithm("HS256")));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let mut cfg = AuthConfig::hs256(SECRET);
        cfg.issuer = Some("https://idp.example".into());
        cfg.audience = Some("switchboard".into());
        let v = Verifier::new(&cfg).unwrap();
        let good = Claims { iss: Some("https://idp.example".into()), aud: Some("switchboard".into()), ..claims() };
        assert!(v.verify(&hs(&good)).is_ok());
        assert_eq!(
            v.verify(&hs(&Claims { iss: Some("https://evil".into()), ..good.clone() })),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(v.verify(&hs(&Claims { aud: Some("other".into()), ..good.clone() })), Err(AuthError::WrongAudience));
        assert_eq!(v.verify(&hs(&Claims { iss: None, ..good.clone() })), Err(AuthError::WrongIssuer));
        assert_eq!(v.verify(&hs(&Claims { aud: None, ..good })), Err(AuthError::WrongAudience));
        // Without configuration, an aud in the token is not a reason to refuse.
        assert!(verifier().verify(&hs(&Claims { aud: Some("x".into()), ..claims() })).is_ok());
    }

    /// Issue 13, point 3: `nbf` was not checked, a token valid until 2286
    /// was accepted, and an array `aud` (valid JWT) was refused as malformed.
    #[test]
    fn not_before_lifetime_and_audience_arrays() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let later = Claims { nbf: Some(now + 3600), ..claims() };
        assert_eq!(v.verify(&hs(&later)), Err(AuthError::NotYetValid));
        assert!(v.verify(&hs(&Claims { nbf: Some(now - 10), ..claims() })).is_ok());
        let forever = Claims { exp: Some(9_999_999_999), ..claims() };
        assert_eq!(v.verify(&hs(&forever)), Err(AuthError::LifetimeTooLong(86_400)));
        assert!(v.verify(&hs(&Claims { exp: Some(now + 86_400), ..claims() })).is_ok(), "a day is fine");
        let mut cfg = AuthConfig::hs256(SECRET);
        cfg.max_lifetime_secs = 600;
        let strict = Verifier::new(&cfg).unwrap();
        assert_eq!(
            strict.verify(&hs(&Claims { exp: Some(now + 3600), ..claims() })),
            Err(AuthError::LifetimeTooLong(600))
        );
        cfg.audience = Some("switchboard".into());
        let with_aud = Verifier::new(&cfg).unwrap();
        let many =
            |a: &[&str]| Claims { aud: Some(Audience::Many(a.iter().map(|s| s.to_string()).collect())), ..claims() };
        assert!(with_aud.verify(&hs(&many(&["crm", "switchboard"]))).is_ok(), "an array that names us");
        assert_eq!(with_aud.verify(&hs(&many(&["crm"]))), Err(AuthError::WrongAudience));
        assert!(v.verify(&hs(&many(&["crm"]))).is_ok(), "no audience configured: any is fine");
    }

    #[test]
    fn origin_allowlist() {
        assert!(verifier().check_origin(Some("https://anything")).is_ok());
        let mut cfg = AuthConfig::hs256(SECRET);
        cfg.allowed_origins = vec!["https://app.example.com".into()];
        let v = Verifier::new(&cfg).unwrap();
        assert!(v.check_origin(Some("https://APP.example.com")).is_ok());
        assert!(v.check_origin(None).is_ok());
        assert_eq!(
            v.check_origin(Some("https://evil.example")),
            Err(AuthError::OriginNotAllowed("https://evil.example".into()))
        );
    }

    #[test]
    fn tokens_are_found_in_all_three_places() {
        let jwt = hs(&claims());
        let mut h = HeaderMap::new();
        assert_eq!(extract_token(&h, None), None);
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&format!("switchboard, {jwt}")).unwrap());
        assert_eq!(extract_token(&h, None), Some((jwt.as_str(), TokenSource::Subprotocol)));
        assert_eq!(selected_subprotocol(&h), Some("switchboard"));
        assert_eq!(extract_token(&h, Some("q.q.q")), Some(("q.q.q", TokenSource::Query)));
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(extract_token(&h, Some("q.q.q")), Some(("a.b.c", TokenSource::Header)));
        let mut only = HeaderMap::new();
        only.insert(http::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&jwt).unwrap());
        assert_eq!(selected_subprotocol(&only), Some(jwt.as_str()));
    }

    #[test]
    fn rs256_and_es256_with_pem_public_keys() {
        let pairs = [
            (
                Algorithm::RS256,
                JwtKey::Rs256Pem(include_bytes!("../testdata/rsa-public.pem").to_vec()),
                EncodingKey::from_rsa_pem(include_bytes!("../testdata/rsa-private.pem")).unwrap(),
            ),
            (
                Algorithm::ES256,
                JwtKey::Es256Pem(include_bytes!("../testdata/ec-public.pem").to_vec()),
                EncodingKey::from_ec_pem(include_bytes!("../testdata/ec-private.pem")).unwrap(),
            ),
        ];
        for (alg, public, private) in pairs {
            let v = Verifier::new(&AuthConfig { key: public, ..AuthConfig::hs256(SECRET) }).unwrap();
            let token = sign(&Header::new(alg), &claims(), &private);
            assert_eq!(v.verify(&token).unwrap().user_id.as_str(), "42", "{alg:?}");
            // An HS256 token signed with the public key's bytes (the classic
            // algorithm-confusion attack) must not pass.
            assert!(v.verify(&hs(&claims())).is_err(), "{alg:?}");
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let id = Identity::new("t9".parse().unwrap(), "u1".parse().unwrap(), Role::Service);
        assert_eq!(verifier().verify(&mint_hs256(SECRET, &id, 60)).unwrap(), id);
    }
}
