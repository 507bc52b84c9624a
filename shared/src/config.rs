//! Configuration, read from the environment once per cold start.
//!
//! Every value is validated here, at the edge, and every error names the
//! variable and what was expected (`REDIS_URL is not a redis:// or rediss://
//! URL`). Nothing panics on bad configuration: `main` prints the error and
//! exits, and Lambda reports an init failure with that text.
//!
//! Tests never touch the process environment: they build values directly, or
//! call [`Config::from_lookup`] with a map.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `REDIS_URL` | — (memory store in the emulator) | `redis://` or `rediss://`; with `REDIS_CLUSTER=true`, a comma-separated list of seed nodes |
//! | `REDIS_CLUSTER` | `false` | talk the Redis Cluster protocol |
//! | `REDIS_USERNAME` / `REDIS_PASSWORD` | — | AUTH (ElastiCache RBAC user / AUTH token), kept out of `REDIS_URL` so it can come from Secrets Manager |
//! | `REDIS_CONNECT_TIMEOUT_MS` / `REDIS_RESPONSE_TIMEOUT_MS` | `2000` / `2000` | fail fast instead of hanging a Lambda |
//! | `KEY_PREFIX` | `callcenter` | first segment of every Redis key (the legacy hub's) |
//! | `PRESENCE_TTL_SECS` | `300` | heartbeat lifetime; a user without one counts as offline |
//! | `OFFLINE_MAX_MESSAGES` / `OFFLINE_TTL_SECS` | `100` / `604800` | offline queue cap and lifetime; only users seen connecting within the TTL get a queue |
//! | `OFFLINE_MAX_QUEUES_PER_TENANT` / `OFFLINE_MAX_BYTES_PER_TENANT` | `10000` / `67108864` | offline queues one tenant may hold, and their bytes together (a publish beyond: 429 `offline_budget_exceeded`) |
//! | `CONNECTION_IDLE_SECS` | `600` | a connection whose client sent nothing this long (API Gateway's idle timeout) is probed by the sweep, and forgotten if gone |
//! | `CONNECTION_UNREACHABLE_SECS` | `1800` | a connection silent this long whose probe fails (its endpoint is unreachable) is forgotten as gone |
//! | `HISTORY_SIZE` | `1000` | events kept per tenant for recovery (`subscribe` with `since`, `GET /v1/events`); `0` turns history off (envelopes then carry no `offset`/`epoch`) |
//! | `HISTORY_TTL_SECS` | `900` | how long an event stays recoverable (longer than API Gateway's 10-minute idle close) |
//! | `HISTORY_MAX_EVENT_BYTES` | `16384` | largest event whose text the history keeps: a larger one keeps its place, and a recovery that needs it answers `recovered:false` (so one tenant's history is at most `HISTORY_SIZE` × this) |
//! | `RECOVERY_MAX_EVENTS` | `1000` | most events one recovery replays; a client that missed more gets `recovered:false` |
//! | `RECOVERY_MAX_BYTES` | `1048576` | most bytes of events one recovery replays (beyond: `recovered:false`) and one `GET /v1/events` page holds (beyond: `next`); from `HISTORY_MAX_EVENT_BYTES` to 4 MiB (a page stays under Lambda's 6 MB response) |
//! | `MAX_MESSAGE_BYTES` | `131072` | largest client frame (API Gateway's 128 KB) |
//! | `MAX_SUBSCRIPTIONS` | `100` | topics per connection |
//! | `CHANNEL_NAMESPACES` | the call center's (`queue`, `team`, `agent`, `call`, `chat`) | JSON: the channel namespaces and who may subscribe and publish in each (see `namespaces`) |
//! | `CHANNELS_PER_CONNECTION` / `CHANNEL_MAX_SUBSCRIBERS` | `50` / `10000` | channels one connection may follow, and connections one channel may have |
//! | `CHANNEL_HISTORY_SIZE` / `CHANNEL_HISTORY_TTL_SECS` | `1000` / `900` | events kept per channel for recovery, and for how long (`0` events: no channel history) |
//! | `CHANNEL_HISTORY_MAX_BYTES_PER_TENANT` | `33554432` | bytes of one tenant's channel histories together; beyond, the channel published to gives up its oldest |
//! | `FANOUT_CONCURRENCY` | `128` | posts in flight during one fan-out |
//! | `FANOUT_CLAIM_TTL_SECS` | `900` | how long a queued fan-out job's claims are kept (the events queue's maxReceiveCount × visibility timeout); deleted when the job finishes |
//! | `FANOUT_MAX_JOBS_PER_TENANT` | `1000` | queued fan-out jobs of one tenant holding claims at once |
//! | `FANOUT_RETRY_MS` | `5000` | how long a fan-out retries posts API Gateway throttled (429), paced, before handing them to a queued job (keep it well under the functions' timeout: `ws-message` has 10 s) |
//! | `RATE_LIMIT_PER_SECOND` | `1000` | HTTP API requests per tenant per second (429 beyond) |
//! | `MAX_BODY_BYTES` | `65536` | largest HTTP API request body (413 beyond) |
//! | `SEED_CHANNELS` | `false` | also PUBLISH events on the legacy hub's Redis channels |
//! | `PLATFORM_TENANT` | — | the operator's tenant: its admins see platform-wide figures (`GET /v1/stats` `total_connections`); nobody else does |
//! | `WEBHOOK_ALLOW_PRIVATE` | `false` | let webhooks use http and loopback/private addresses (local development) |
//! | `WEBHOOK_QUEUE_URL` / `WEBHOOK_DLQ_URL` | — | the webhook deliveries queue and its dead-letter queue (webhooks are not sent without them) |
//! | `EVENTS_QUEUE_URL` | — | the asynchronous fan-out queue (`POST /v1/events?async=true`, chunked broadcasts) |
//! | `FANOUT_CHUNK_SIZE` | `1000` | recipients above which a queued broadcast is split into chunks |
//! | `WEBHOOK_RETRY_SCHEDULE` | `5s,5m,30m,2h,5h,10h,10h` | waits between attempts (`s`, `m`, `h`; at most 12 h each) |
//! | `WEBHOOK_RETRY_JITTER` | `0.2` | ± fraction of each wait |
//! | `WEBHOOK_SECRET_GRACE_SECS` | `86400` | how long a rotated-out secret still signs |
//! | `WEBHOOK_BREAKER_THRESHOLD` / `WEBHOOK_BREAKER_COOLDOWN_SECS` | `5` / `60` | consecutive failures that pause an endpoint, and for how long (0: no breaker) |
//! | `WEBHOOK_DISABLE_AFTER_SECS` | `432000` | an endpoint failing this long (5 days) is disabled and `system.alert` is sent |
//! | `WEBHOOK_QUEUE_RETENTION_SECS` | `345600` | the webhook queue's `MessageRetentionPeriod` (96 h): a retry that would wait past it (less 10 min) is dead-lettered instead of expiring unseen |
//! | `WEBHOOK_LOG_MAX_ENTRIES` | `10000` | delivery-log entries kept per tenant |
//! | `WEBHOOK_LOG_TTL_SECS` | `604800` | delivery-log entries older than this (7 days) are trimmed |
//! | `WEBHOOK_LOG_ENTRY_BYTES` | `16384` | about the most bytes of one log entry: the response excerpt gets a quarter (after JSON escaping), the event's data is kept when it fits in half (else its size and SHA-256) |
//! | `WEBHOOK_MAX_PER_TENANT` | `50` | webhooks one tenant may register (409 `limit_exceeded` beyond) |
//! | `WEBHOOK_MAX_URL_BYTES` | `2048` | longest webhook URL (400 beyond) |
//! | `WEBHOOK_MAX_PREVIOUS_SECRETS` | `3` | rotated-out secrets still signing at once (409 on a rotation beyond; each adds a signature to every delivery) |
//! | `CALLBACK_ENDPOINT` | `https://{domainName}/{stage}` | override of the `@connections` endpoint stored per connection |
//! | `JWT_SECRET` | — | HS256 secret, at least 32 bytes |
//! | `JWT_PUBLIC_KEY` / `JWT_ALGORITHM` | — / from the key | PEM public key, `RS256` or `ES256` |
//! | `JWT_ISSUER` / `JWT_AUDIENCE` | unchecked | required `iss` / `aud` when set |
//! | `JWT_LEEWAY_SECS` | `30` | clock skew allowed on `exp` and `nbf` |
//! | `JWT_MAX_LIFETIME_SECS` | `86400` | a token whose `exp` is further away than this is refused |
//! | `ALLOWED_ORIGINS` | empty = all | comma-separated Origin allowlist |

use std::str::FromStr;
use std::time::Duration;

use url::Url;

/// Every variable [`Config`] reads. The deployment test checks that the SAM
/// template sets no variable outside these lists (a typo there would be
/// silently ignored).
pub const CONFIG_VARIABLES: &[&str] = &[
    "CALLBACK_ENDPOINT",
    "CHANNELS_PER_CONNECTION",
    "CHANNEL_HISTORY_MAX_BYTES_PER_TENANT",
    "CHANNEL_HISTORY_SIZE",
    "CHANNEL_HISTORY_TTL_SECS",
    "CHANNEL_MAX_SUBSCRIBERS",
    "CHANNEL_NAMESPACES",
    "CONNECTION_IDLE_SECS",
    "CONNECTION_UNREACHABLE_SECS",
    "EVENTS_QUEUE_URL",
    "FANOUT_CHUNK_SIZE",
    "FANOUT_CLAIM_TTL_SECS",
    "FANOUT_CONCURRENCY",
    "FANOUT_MAX_JOBS_PER_TENANT",
    "FANOUT_RETRY_MS",
    "HISTORY_MAX_EVENT_BYTES",
    "HISTORY_SIZE",
    "HISTORY_TTL_SECS",
    "KEY_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_SUBSCRIPTIONS",
    "OFFLINE_MAX_BYTES_PER_TENANT",
    "OFFLINE_MAX_MESSAGES",
    "OFFLINE_MAX_QUEUES_PER_TENANT",
    "OFFLINE_TTL_SECS",
    "PLATFORM_TENANT",
    "PRESENCE_TTL_SECS",
    "RATE_LIMIT_PER_SECOND",
    "RECOVERY_MAX_BYTES",
    "RECOVERY_MAX_EVENTS",
    "REDIS_CLUSTER",
    "REDIS_CONNECT_TIMEOUT_MS",
    "REDIS_PASSWORD",
    "REDIS_RESPONSE_TIMEOUT_MS",
    "REDIS_URL",
    "REDIS_USERNAME",
    "SEED_CHANNELS",
    "WEBHOOK_ALLOW_PRIVATE",
    "WEBHOOK_BREAKER_COOLDOWN_SECS",
    "WEBHOOK_BREAKER_THRESHOLD",
    "WEBHOOK_DISABLE_AFTER_SECS",
    "WEBHOOK_DLQ_URL",
    "WEBHOOK_LOG_ENTRY_BYTES",
    "WEBHOOK_LOG_MAX_ENTRIES",
    "WEBHOOK_LOG_TTL_SECS",
    "WEBHOOK_MAX_PER_TENANT",
    "WEBHOOK_MAX_PREVIOUS_SECRETS",
    "WEBHOOK_MAX_URL_BYTES",
    "WEBHOOK_QUEUE_RETENTION_SECS",
    "WEBHOOK_QUEUE_URL",
    "WEBHOOK_RETRY_JITTER",
    "WEBHOOK_RETRY_SCHEDULE",
    "WEBHOOK_SECRET_GRACE_SECS",
];

/// Read by the logging set-up (`telemetry`), in every function.
pub const LOG_VARIABLES: &[&str] = &["LOG_FORMAT", "RUST_LOG"];

/// A configuration value that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var} {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What was wrong, phrased to follow the variable name.
    pub problem: String,
}

impl ConfigError {
    /// `var` + a phrase such as "is not a number".
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        ConfigError { var, problem: problem.into() }
    }
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One URL, or the seed nodes of a cluster.
    pub urls: Vec<String>,
    /// Use the Redis Cluster protocol.
    pub cluster: bool,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one command's answer.
    pub response_timeout: Duration,
}

impl RedisConfig {
    /// A single-node configuration with default timeouts (tests use this).
    pub fn single(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
        }
    }

    /// A cluster configuration from seed nodes, with default timeouts.
    pub fn cluster(urls: Vec<String>) -> Self {
        RedisConfig { urls, cluster: true, ..RedisConfig::single("") }
    }
}

/// Operational limits. Policy as data: tests shrink them, operators tune them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Lifetime of a user's presence heartbeat.
    pub presence_ttl: Duration,
    /// Most messages kept for one offline user; the oldest go first.
    pub offline_max_messages: usize,
    /// Lifetime of an offline queue after its last write; also how long
    /// after their last `$connect` a user still gets one.
    pub offline_ttl: Duration,
    /// Offline queues one tenant may hold at once.
    pub offline_max_queues: usize,
    /// Bytes of all of one tenant's offline queues together.
    pub offline_max_bytes: usize,
    /// A connection whose client sent nothing this long is probed by the sweep.
    pub connection_idle: Duration,
    /// A connection silent this long whose probe fails (its endpoint cannot
    /// be reached: the instance that held it died) is forgotten as gone.
    pub connection_unreachable: Duration,
    /// Largest client frame accepted by `ws-message`.
    pub max_message_bytes: usize,
    /// Most topics one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Posts in flight at once during one fan-out.
    pub fanout_concurrency: usize,
    /// How long one fan-out keeps retrying posts API Gateway throttled
    /// (429) before it hands them on: a synchronous publish to a queued
    /// job, a queued job to its own retry.
    pub fanout_retry_window: Duration,
    /// How long a queued fan-out job's claims (and the marker of a finished
    /// one) are kept: as long as the events queue may deliver it again
    /// (its `maxReceiveCount` times its visibility timeout).
    pub fanout_claim_ttl: Duration,
    /// Queued fan-out jobs of one tenant holding claims at once: what their
    /// memory in Redis is bounded by (beyond it a job waits for a retry).
    pub fanout_max_jobs: usize,
    /// Requests per second one tenant may make to the HTTP API (all instances together).
    pub rate_limit_per_sec: u32,
    /// Largest HTTP API request body.
    pub max_body_bytes: usize,
    /// Events kept per tenant for recovery; 0: no history.
    pub history_size: usize,
    /// How long an event stays recoverable.
    pub history_ttl: Duration,
    /// Largest event whose text the history keeps (a larger one keeps its
    /// place only, and a recovery that needs it fails whole).
    pub history_max_event_bytes: usize,
    /// Most events one recovery replays.
    pub recovery_max_events: usize,
    /// Most bytes of events one recovery replays, and one `GET /v1/events`
    /// page holds: what one history read may take out of Redis.
    pub recovery_max_bytes: usize,
    /// Most channels one connection may subscribe to.
    pub channels_per_connection: usize,
    /// Most connections one channel may have as subscribers.
    pub channel_max_subscribers: usize,
    /// Events kept per channel for recovery; 0: no channel history.
    pub channel_history_size: usize,
    /// How long a channel's event stays recoverable.
    pub channel_history_ttl: Duration,
    /// Bytes of all of one tenant's channel histories together: beyond,
    /// the channel being published to gives up its oldest events.
    pub channel_history_max_bytes: usize,
}

/// The largest `RECOVERY_MAX_BYTES`: a page of events this size, with its
/// JSON around it, stays well under Lambda's 6 MB response limit.
pub const RECOVERY_MAX_BYTES_CEILING: usize = 4 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            presence_ttl: Duration::from_secs(300),
            offline_max_messages: 100,
            offline_ttl: Duration::from_secs(7 * 24 * 3600),
            offline_max_queues: 10_000,
            offline_max_bytes: 64 * 1024 * 1024,
            connection_idle: Duration::from_secs(600),
            connection_unreachable: Duration::from_secs(1800),
            max_message_bytes: 128 * 1024,
            max_subscriptions: 100,
            fanout_concurrency: 128,
            fanout_retry_window: Duration::from_secs(5),
            fanout_claim_ttl: Duration::from_secs(900),
            fanout_max_jobs: 1000,
            rate_limit_per_sec: 1000,
            max_body_bytes: 64 * 1024,
            history_size: 1000,
            history_ttl: Duration::from_secs(900),
            history_max_event_bytes: 16 * 1024,
            recovery_max_events: 1000,
            recovery_max_bytes: 1024 * 1024,
            channels_per_connection: 50,
            channel_max_subscribers: 10_000,
            channel_history_size: 1000,
            channel_history_ttl: Duration::from_secs(900),
            channel_history_max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The SQS queues (URLs as SQS gives them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueUrls {
    /// Webhook deliveries (`WEBHOOK_QUEUE_URL`).
    pub webhooks: Option<String>,
    /// Final failures, with their history (`WEBHOOK_DLQ_URL`).
    pub webhooks_dlq: Option<String>,
    /// Asynchronous and chunked fan-out (`EVENTS_QUEUE_URL`).
    pub events: Option<String>,
}

/// How webhooks are delivered. Policy as data: tests shrink the waits.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Waits between attempts.
    pub schedule: crate::webhook::RetrySchedule,
    /// How long a rotated-out secret keeps signing.
    pub rotation_grace: Duration,
    /// Consecutive failures that pause an endpoint (0: never).
    pub breaker_threshold: u32,
    /// How long a pause lasts.
    pub breaker_cooldown: Duration,
    /// An endpoint failing this long is disabled.
    pub disable_after: Duration,
    /// Delivery-log entries kept per tenant.
    pub log_max_entries: usize,
    /// Delivery-log entries older than this are trimmed.
    pub log_ttl: Duration,
    /// About the most bytes of one delivery-log entry.
    pub log_entry_bytes: usize,
    /// Webhooks one tenant may register.
    pub max_per_tenant: usize,
    /// Longest webhook URL, in bytes.
    pub max_url_bytes: usize,
    /// Rotated-out secrets that may sign at once.
    pub max_previous_secrets: usize,
    /// The webhook queue's message retention: no retry is scheduled past it.
    pub queue_retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            schedule: crate::webhook::RetrySchedule::default(),
            rotation_grace: Duration::from_secs(24 * 3600),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(60),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            log_max_entries: 10_000,
            log_ttl: Duration::from_secs(7 * 24 * 3600),
            log_entry_bytes: 16 * 1024,
            max_per_tenant: 50,
            max_url_bytes: 2048,
            max_previous_secrets: 3,
            queue_retention: Duration::from_secs(4 * 24 * 3600),
        }
    }
}

use crate::webhook::parse_schedule;

/// Everything a WebSocket function needs besides auth.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `None`: the in-memory store (only meaningful inside one emulator process).
    pub redis: Option<RedisConfig>,
    /// First segment of every Redis key.
    pub key_prefix: String,
    /// Operational limits.
    pub limits: Limits,
    /// Override for the `@connections` endpoint recorded with each connection.
    pub callback_endpoint: Option<Url>,
    /// Also PUBLISH every event on the legacy hub's Redis channels.
    pub compat_channels: bool,
    /// The operator's own tenant: its admins are platform operators and
    /// see platform-wide figures (`GET /v1/stats`'s `total_connections`).
    /// `None`: nobody does.
    pub platform_tenant: Option<crate::ids::TenantId>,
    /// Where webhooks may point: https to public addresses in production;
    /// `WEBHOOK_ALLOW_PRIVATE=true` (the emulator's default) allows http,
    /// loopback and private ranges for local receivers.
    pub webhook_urls: crate::ssrf::UrlPolicy,
    /// The SQS queues.
    pub queues: QueueUrls,
    /// Recipients above which a queued broadcast is split into chunks.
    pub fanout_chunk_size: usize,
    /// Webhook delivery policy.
    pub webhooks: WebhookSettings,
    /// The channel namespaces and what each role may do in them.
    pub channels: crate::namespaces::Namespaces,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis: None,
            key_prefix: "callcenter".into(),
            limits: Limits::default(),
            callback_endpoint: None,
            compat_channels: false,
            platform_tenant: None,
            webhook_urls: crate::ssrf::UrlPolicy::PRODUCTION,
            queues: QueueUrls::default(),
            fanout_chunk_size: 1000,
            webhooks: WebhookSettings::default(),
            channels: crate::namespaces::Namespaces::default(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (a map in tests).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // Each section reads its own variables.
        let redis = RedisConfig::from_lookup(get)?;
        let key_prefix = non_empty(get, "KEY_PREFIX").unwrap_or_else(|| "callcenter".into());
        if key_prefix.len() > 64
            || !key_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ConfigError::new(
                "KEY_PREFIX",
                "must be 1-64 letters, digits, '-', '_' or '.' (no ':', '{' or '}')",
            ));
        }
        let limits = Limits::from_lookup(get)?;
        let callback_endpoint = match non_empty(get, "CALLBACK_ENDPOINT") {
            None => None,
            Some(raw) => {
                let url =
                    Url::parse(&raw).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                Some(url.ok_or_else(|| {
                    ConfigError::new("CALLBACK_ENDPOINT", format!("is not an http:// or https:// URL (got '{raw}')"))
                })?)
            }
        };
        let compat_channels = parse_bool(get, "SEED_CHANNELS")?.unwrap_or(false);
        let platform_tenant = match non_empty(get, "PLATFORM_TENANT") {
            None => None,
            Some(raw) => {
                Some(crate::ids::TenantId::parse(raw).map_err(|e| ConfigError::new("PLATFORM_TENANT", e.to_string()))?)
            }
        };
        let webhook_urls = match parse_bool(get, "WEBHOOK_ALLOW_PRIVATE")? {
            Some(true) => crate::ssrf::UrlPolicy::LOCAL,
            _ => crate::ssrf::UrlPolicy::PRODUCTION,
        };
        let queues = QueueUrls::from_lookup(get)?;
        let webhooks = WebhookSettings::from_lookup(get)?;
        let fanout_chunk_size = positive(get, "FANOUT_CHUNK_SIZE", 1000)? as usize;
        let channels = match non_empty(get, "CHANNEL_NAMESPACES") {
            None => crate::namespaces::Namespaces::default(),
            Some(json) => crate::namespaces::Namespaces::parse(&json)
                .map_err(|e| ConfigError::new("CHANNEL_NAMESPACES", e.to_string()))?,
        };
        Ok(Config {
            redis,
            key_prefix,
            limits,
            callback_endpoint,
            compat_channels,
            platform_tenant,
            webhook_urls,
            queues,
            fanout_chunk_size,
            webhooks,
            channels,
        })
    }

    /// The Redis settings, for functions that cannot run without Redis.
    pub fn require_redis(&self) -> Result<&RedisConfig, ConfigError> {
        self.redis.as_ref().ok_or_else(|| {
            ConfigError::new("REDIS_URL", "is not set; functions keep their state in Redis (redis://host:6379)")
        })
    }
}

impl RedisConfig {
    /// `REDIS_URL` (and `REDIS_CLUSTER`, credentials, timeouts); `None` without one.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let cluster = parse_bool(get, "REDIS_CLUSTER")?.unwrap_or(false);
        Ok(match non_empty(get, "REDIS_URL") {
            None => None,
            Some(raw) => {
                let urls: Vec<String> =
                    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if urls.len() > 1 && !cluster {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        "lists several nodes; set REDIS_CLUSTER=true for a cluster",
                    ));
                }
                for u in &urls {
                    validate_redis_url(u)?;
                }
                let username = non_empty(get, "REDIS_USERNAME");
                let password = non_empty(get, "REDIS_PASSWORD");
                let urls = if username.is_none() && password.is_none() {
                    urls
                } else {
                    urls.iter()
                        .map(|u| {
                            let mut url = Url::parse(u).expect("validated above");
                            let set = match &username {
                                Some(name) => url.set_username(name),
                                None => Ok(()),
                            }
                            .and_then(|()| url.set_password(password.as_deref()));
                            set.map(|()| url.to_string()).map_err(|()| {
                                ConfigError::new(
                                    "REDIS_PASSWORD",
                                    "cannot be added to REDIS_URL (does it have a host?)",
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?
                };
                Some(RedisConfig {
                    urls,
                    cluster,
                    connect_timeout: Duration::from_millis(parse_or(
                        get,
                        "REDIS_CONNECT_TIMEOUT_MS",
                        2000u64,
                        "a number of milliseconds",
                    )?),
                    response_timeout: Duration::from_millis(parse_or(
                        get,
                        "REDIS_RESPONSE_TIMEOUT_MS",
                        2000u64,
                        "a number of milliseconds",
                    )?),
                })
            }
        })
    }
}

impl Limits {
    /// The limits' variables, each defaulting to [`Limits::default`].
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Limits::default();
        Ok(Limits {
            presence_ttl: Duration::from_secs(positive(get, "PRESENCE_TTL_SECS", d.presence_ttl.as_secs())?),
            offline_max_messages: positive(get, "OFFLINE_MAX_MESSAGES", d.offline_max_messages as u64)? as usize,
            offline_ttl: Duration::from_secs(positive(get, "OFFLINE_TTL_SECS", d.offline_ttl.as_secs())?),
            offline_max_queues: positive(get, "OFFLINE_MAX_QUEUES_PER_TENANT", d.offline_max_queues as u64)? as usize,
            offline_max_bytes: positive(get, "OFFLINE_MAX_BYTES_PER_TENANT", d.offline_max_bytes as u64)? as usize,
            connection_idle: Duration::from_secs(positive(get, "CONNECTION_IDLE_SECS", d.connection_idle.as_secs())?),
            connection_unreachable: Duration::from_secs(positive(
                get,
                "CONNECTION_UNREACHABLE_SECS",
                d.connection_unreachable.as_secs(),
            )?),
            max_message_bytes: positive(get, "MAX_MESSAGE_BYTES", d.max_message_bytes as u64)? as usize,
            max_subscriptions: positive(get, "MAX_SUBSCRIPTIONS", d.max_subscriptions as u64)? as usize,
            fanout_concurrency: positive(get, "FANOUT_CONCURRENCY", d.fanout_concurrency as u64)? as usize,
            fanout_retry_window: Duration::from_millis(positive(
                get,
                "FANOUT_RETRY_MS",
                d.fanout_retry_window.as_millis() as u64,
            )?),
            fanout_claim_ttl: Duration::from_secs(positive(
                get,
                "FANOUT_CLAIM_TTL_SECS",
                d.fanout_claim_ttl.as_secs(),
            )?),
            fanout_max_jobs: positive(get, "FANOUT_MAX_JOBS_PER_TENANT", d.fanout_max_jobs as u64)? as usize,
            rate_limit_per_sec: positive(get, "RATE_LIMIT_PER_SECOND", u64::from(d.rate_limit_per_sec))?
                .try_into()
                .map_err(|_| ConfigError::new("RATE_LIMIT_PER_SECOND", "is too large"))?,
            max_body_bytes: positive(get, "MAX_BODY_BYTES", d.max_body_bytes as u64)? as usize,
            history_size: parse_or(get, "HISTORY_SIZE", d.history_size, "a number of events (0 turns history off)")?,
            history_ttl: Duration::from_secs(positive(get, "HISTORY_TTL_SECS", d.history_ttl.as_secs())?),
            history_max_event_bytes: positive(get, "HISTORY_MAX_EVENT_BYTES", d.history_max_event_bytes as u64)?
                as usize,
            recovery_max_events: positive(get, "RECOVERY_MAX_EVENTS", d.recovery_max_events as u64)? as usize,
            recovery_max_bytes: recovery_max_bytes(get, d.recovery_max_bytes)?,
            channels_per_connection: positive(get, "CHANNELS_PER_CONNECTION", d.channels_per_connection as u64)?
                as usize,
            channel_max_subscribers: positive(get, "CHANNEL_MAX_SUBSCRIBERS", d.channel_max_subscribers as u64)?
                as usize,
            channel_history_size: parse_or(
                get,
                "CHANNEL_HISTORY_SIZE",
                d.channel_history_size,
                "a number of events (0 turns channel history off)",
            )?,
            channel_history_ttl: Duration::from_secs(positive(
                get,
                "CHANNEL_HISTORY_TTL_SECS",
                d.channel_history_ttl.as_secs(),
            )?),
            channel_history_max_bytes: positive(
                get,
                "CHANNEL_HISTORY_MAX_BYTES_PER_TENANT",
                d.channel_history_max_bytes as u64,
            )? as usize,
        })
    }
}

impl QueueUrls {
    /// `WEBHOOK_QUEUE_URL`, `WEBHOOK_DLQ_URL`, `EVENTS_QUEUE_URL`, each checked to be an SQS queue URL.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let queue_url = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match non_empty(get, var) {
                None => Ok(None),
                Some(raw) => match Url::parse(&raw) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.path_segments().is_some_and(|mut s| s.nth(1).is_some()) =>
                    {
                        Ok(Some(raw))
                    }
                    _ => Err(ConfigError::new(
                        var,
                        format!(
                            "is not an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/name (got '{raw}')"
                        ),
                    )),
                },
            }
        };
        Ok(QueueUrls {
            webhooks: queue_url("WEBHOOK_QUEUE_URL")?,
            webhooks_dlq: queue_url("WEBHOOK_DLQ_URL")?,
            events: queue_url("EVENTS_QUEUE_URL")?,
        })
    }
}

impl WebhookSettings {
    /// The `WEBHOOK_*` policy variables, each defaulting to [`WebhookSettings::default`].
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let dw = WebhookSettings::default();
        let schedule = match non_empty(get, "WEBHOOK_RETRY_SCHEDULE") {
            None => dw.schedule.delays.clone(),
            Some(raw) => parse_schedule(&raw).map_err(|e| ConfigError::new("WEBHOOK_RETRY_SCHEDULE", e))?,
        };
        let jitter: f64 = parse_or(get, "WEBHOOK_RETRY_JITTER", dw.schedule.jitter, "a fraction from 0 to 1")?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::new("WEBHOOK_RETRY_JITTER", format!("is {jitter}; expected 0 to 1")));
        }
        let secs = |var, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(parse_or(get, var, default.as_secs(), "a number of seconds")?))
        };
        Ok(WebhookSettings {
            schedule: crate::webhook::RetrySchedule { delays: schedule, jitter },
            rotation_grace: secs("WEBHOOK_SECRET_GRACE_SECS", dw.rotation_grace)?,
            breaker_threshold: parse_or(get, "WEBHOOK_BREAKER_THRESHOLD", dw.breaker_threshold, "a whole number")?,
            breaker_cooldown: secs("WEBHOOK_BREAKER_COOLDOWN_SECS", dw.breaker_cooldown)?,
            disable_after: secs("WEBHOOK_DISABLE_AFTER_SECS", dw.disable_after)?,
            log_max_entries: positive(get, "WEBHOOK_LOG_MAX_ENTRIES", dw.log_max_entries as u64)? as usize,
            log_ttl: Duration::from_secs(positive(get, "WEBHOOK_LOG_TTL_SECS", dw.log_ttl.as_secs())?),
            log_entry_bytes: positive(get, "WEBHOOK_LOG_ENTRY_BYTES", dw.log_entry_bytes as u64)? as usize,
            max_per_tenant: positive(get, "WEBHOOK_MAX_PER_TENANT", dw.max_per_tenant as u64)? as usize,
            max_url_bytes: positive(get, "WEBHOOK_MAX_URL_BYTES", dw.max_url_bytes as u64)? as usize,
            max_previous_secrets: parse_or(
                get,
                "WEBHOOK_MAX_PREVIOUS_SECRETS",
                dw.max_previous_secrets,
                "a whole number",
            )?,
            queue_retention: Duration::from_secs(positive(
                get,
                "WEBHOOK_QUEUE_RETENTION_SECS",
                dw.queue_retention.as_secs(),
            )?),
        })
    }
}

fn validate_redis_url(u: &str) -> Result<(), ConfigError> {
    let parsed = Url::parse(u)
        .ok()
        .filter(|p| matches!(p.scheme(), "redis" | "rediss") && p.host_str().is_some_and(|h| !h.is_empty()));
    match parsed {
        Some(_) => Ok(()),
        // Do not echo the URL: it may carry a password.
        None => Err(ConfigError::new(
            "REDIS_URL",
            "is not a redis:// or rediss:// URL (expected e.g. redis://localhost:6379)",
        )),
    }
}

pub(crate) fn non_empty(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    get(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(crate) fn parse_or<T: FromStr>(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match non_empty(get, var) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|_| ConfigError::new(var, format!("is not {expected} (got '{raw}')"))),
    }
}

/// `RECOVERY_MAX_BYTES`: from the largest event the history keeps (one
/// such event must fit in a recovery) to [`RECOVERY_MAX_BYTES_CEILING`].
fn recovery_max_bytes(get: &dyn Fn(&str) -> Option<String>, default: usize) -> Result<usize, ConfigError> {
    let v = positive(get, "RECOVERY_MAX_BYTES", default as u64)? as usize;
    let event = match non_empty(get, "HISTORY_MAX_EVENT_BYTES") {
        Some(raw) => raw.parse().unwrap_or(0),
        None => Limits::default().history_max_event_bytes,
    };
    if v < event || v > RECOVERY_MAX_BYTES_CEILING {
        return Err(ConfigError::new(
            "RECOVERY_MAX_BYTES",
            format!("must be from HISTORY_MAX_EVENT_BYTES ({event}) to {RECOVERY_MAX_BYTES_CEILING} (got {v})"),
        ));
    }
    Ok(v)
}

pub(crate) fn positive(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    let v = parse_or(get, var, default, "a positive whole number")?;
    if v == 0 {
        return Err(ConfigError::new(var, "must be greater than 0"));
    }
    Ok(v)
}

pub(crate) fn parse_bool(get: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<bool>, ConfigError> {
    match non_empty(get, var).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(v) => Err(ConfigError::new(var, format!("is not true or false (got '{v}')"))),
    }
}

#[cfg(test)]
mod tests;
