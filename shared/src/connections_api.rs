//! Posting to WebSocket connections through the API Gateway Management API
//! (`@connections`).
//!
//! Each connection was recorded with the endpoint that reaches it
//! (`https://{domainName}/{stage}` in AWS, the emulator's own address
//! locally), so a post goes to that endpoint whichever function instance
//! or emulator makes it. One `aws-sdk-apigatewaymanagement` client per
//! endpoint, built on first use and kept: they share the SDK's pooled HTTP
//! client, so a fan-out reuses connections instead of opening one per post.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::ids::ConnectionId;

/// Fixed dummy credentials for the emulator (which checks no signature),
/// so SDK clients never probe the environment or instance metadata.
pub fn local_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("local", "local", None, None, "switchboard-local"))
}

/// What became of one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// API Gateway accepted the frame.
    Delivered,
    /// `410 Gone`: the connection no longer exists; forget it.
    Gone,
    /// `429 LimitExceededException`: over the account's request quota.
    /// Nothing was sent; the same post may be made again later.
    Throttled,
    /// Anything else (network, 5xx); the connection is kept.
    Failed(String),
}

/// Sends frames to connections.
#[async_trait]
pub trait ConnectionsApi: Send + Sync + 'static {
    /// Posts `data` to `connection` through `endpoint`.
    async fn post(&self, endpoint: &str, connection: &ConnectionId, data: &[u8]) -> PostOutcome;

    /// Asks whether `connection` still exists (`GET @connections/{id}`),
    /// sending it nothing: `Delivered` when it does, `Gone` when it does
    /// not. A gateway that cannot ask answers `Failed`, and a sweep keeps
    /// the connection.
    async fn probe(&self, endpoint: &str, connection: &ConnectionId) -> PostOutcome {
        let _ = (endpoint, connection);
        PostOutcome::Failed("this gateway cannot probe connections".into())
    }
}

/// The production gateway: the AWS SDK, one client per endpoint.
pub struct ManagementApi {
    base: aws_sdk_apigatewaymanagement::config::Builder,
    clients: RwLock<HashMap<String, Client>>,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi").finish_non_exhaustive()
    }
}

impl ManagementApi {
    /// Credentials and region from the environment (a Lambda's role).
    pub async fn from_env() -> Self {
        Self::with_config(aws_sdk_apigatewaymanagement::config::Builder::from(crate::aws::sdk_config().await))
    }

    /// For the emulator and tests: fixed dummy credentials (the emulator
    /// accepts any signature) and no look-up of the environment, which
    /// would otherwise probe for instance metadata.
    pub fn local() -> Self {
        let builder = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("local"))
            .credentials_provider(local_credentials());
        Self::with_config(builder)
    }

    fn with_config(base: aws_sdk_apigatewaymanagement::config::Builder) -> Self {
        // The SDK sets no operation timeout by default: one endpoint that
        // accepts the connection and never answers would hold a fan-out (and
        // the function invoking it) until Lambda kills it. Bound every post.
        let timeouts = aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(10))
            .build();
        // No retries inside the SDK: a throttled post (429) comes back at
        // once, and the fan-out retries it paced to the quota it measures
        // (`broadcast::post_all`), which the SDK's own backoff knows nothing of.
        let retries = aws_sdk_apigatewaymanagement::config::retry::RetryConfig::standard().with_max_attempts(1);
        ManagementApi {
            base: base.timeout_config(timeouts).retry_config(retries),
            clients: RwLock::new(HashMap::new()),
        }
    }

    fn client(&self, endpoint: &str) -> Client {
        if let Some(c) = self.clients.read().unwrap_or_else(|p| p.into_inner()).get(endpoint) {
            return c.clone();
        }
        let client = Client::from_conf(self.base.clone().endpoint_url(endpoint).build());
        self.clients.write().unwrap_or_else(|p| p.into_inner()).entry(endpoint.to_owned()).or_insert(client).clone()
    }
}

#[async_trait]
impl ConnectionsApi for ManagementApi {
    async fn post(&self, endpoint: &str, connection: &ConnectionId, data: &[u8]) -> PostOutcome {
        let result = self
            .client(endpoint)
            .post_to_connection()
            .connection_id(connection.as_str())
            .data(Blob::new(data))
            .send()
            .await;
        match result {
            Ok(_) => PostOutcome::Delivered,
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_gone_exception() => PostOutcome::Gone,
                Some(service) if service.is_limit_exceeded_exception() => PostOutcome::Throttled,
                _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 429) => PostOutcome::Throttled,
                _ => PostOutcome::Failed(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string()),
            },
        }
    }

    async fn probe(&self, endpoint: &str, connection: &ConnectionId) -> PostOutcome {
        let result = self.client(endpoint).get_connection().connection_id(connection.as_str()).send().await;
        match result {
            Ok(_) => PostOutcome::Delivered,
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_gone_exception() => PostOutcome::Gone,
                Some(service) if service.is_limit_exceeded_exception() => PostOutcome::Throttled,
                _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 429) => PostOutcome::Throttled,
                _ => PostOutcome::Failed(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string()),
            },
        }
    }
}

/// Paces posts to the account's `@connections` quota, which it learns
/// from the 429s it gets.
///
/// API Gateway throttles every API call of an account and Region with one
/// token bucket (10,000 requests per second, a burst of 5,000, by
/// default); a post over it is answered 429 and sends nothing. Retrying
/// at once only spends more of the quota on refusals, so a fan-out that is
/// throttled slows down: to a little under the rate the gateway accepted
/// over the last second, then up again by a tenth every half second
/// without a 429 (additive probing, multiplicative cuts), until no 429
/// comes and the pacer lets posts go unpaced again. One per function
/// instance (the context's `pacer`), shared by its fan-outs: they
/// spend one quota.
#[derive(Debug)]
pub struct Pacer {
    state: std::sync::Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    /// Posts per second; `None`: unpaced (no 429 lately).
    rate: Option<f64>,
    /// When the next paced post may go.
    next_at: std::time::Instant,
    /// The last cut, and the last rise, of `rate`.
    last_cut: std::time::Instant,
    last_rise: std::time::Instant,
    /// Posts accepted in the current and the previous half second.
    window_start: std::time::Instant,
    accepted_now: u64,
    accepted_before: u64,
}

/// Cuts come at most this often: the 429s of one burst are one signal.
const PACER_CUT_EVERY: Duration = Duration::from_millis(200);
/// Without a 429 for this long the rate rises by a tenth.
const PACER_RISE_EVERY: Duration = Duration::from_millis(500);
/// The slowest pace (posts per second).
const PACER_MIN_RATE: f64 = 10.0;
/// Without a 429 for this long the pacer lets go.
const PACER_RELEASE_AFTER: Duration = Duration::from_secs(10);

impl Default for Pacer {
    fn default() -> Self {
        let now = std::time::Instant::now();
        Pacer {
            state: std::sync::Mutex::new(PacerState {
                rate: None,
                next_at: now,
                last_cut: now - PACER_CUT_EVERY,
                last_rise: now,
                window_start: now,
                accepted_now: 0,
                accepted_before: 0,
            }),
        }
    }
}

impl PacerState {
    /// Rolls the half-second windows forward to `now`.
    fn roll(&mut self, now: std::time::Instant) {
        let half = PACER_RISE_EVERY;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= half * 2 {
            (self.accepted_before, self.accepted_now, self.window_start) = (0, 0, now);
        } else if elapsed >= half {
            (self.accepted_before, self.accepted_now, self.window_start) =
                (self.accepted_now, 0, self.window_start + half);
        }
    }

    /// Posts accepted per second over the last half second to second.
    fn accepted_rate(&self, now: std::time::Instant) -> f64 {
        let span = now.saturating_duration_since(self.window_start) + PACER_RISE_EVERY;
        (self.accepted_now + self.accepted_before) as f64 / span.as_secs_f64()
    }
}

impl Pacer {
    /// Waits for this post's turn (at once while unpaced); false, at
    /// once, when its turn would come after `deadline`.
    pub async fn turn(&self, deadline: std::time::Instant) -> bool {
        let slot = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(rate) = s.rate else { return true };
            let now = std::time::Instant::now();
            let slot = s.next_at.max(now);
            if slot > deadline {
                return false;
            }
            s.next_at = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
        true
    }

    /// A post was accepted.
    pub fn accepted(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        s.roll(now);
        s.accepted_now += 1;
        if let Some(rate) = s.rate {
            let calm = now.saturating_duration_since(s.last_cut);
            if calm >= PACER_RELEASE_AFTER {
                s.rate = None;
            } else if calm >= PACER_RISE_EVERY && now.saturating_duration_since(s.last_rise) >= PACER_RISE_EVERY {
                s.rate = Some(rate * 1.1);
                s.last_rise = now;
            }
        }
    }

    /// A post was throttled (429).
    pub fn throttled(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if now.saturating_duration_since(s.last_cut) < PACER_CUT_EVERY {
            return;
        }
        s.roll(now);
        let accepted = s.accepted_rate(now);
        let current = s.rate.map_or(accepted, |r| r.min(accepted.max(PACER_MIN_RATE)));
        s.rate = Some((current * 0.9).max(PACER_MIN_RATE));
        (s.last_cut, s.last_rise) = (now, now);
        tracing::debug!(rate = s.rate, accepted, "throttled: posts paced");
    }

    /// The pace, posts per second (`None`: unpaced).
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rate
    }
}
