//! The handles every handler receives: configuration, the store and the
//! `@connections` gateway.
//!
//! Built once per cold start (or once per emulator process) and cloned
//! cheaply into each invocation.

use std::sync::Arc;

use crate::config::{Config, ConfigError, QueueUrls};
use crate::connections_api::{ConnectionsApi, ManagementApi, Pacer};
use crate::queue::Queues;
use crate::store::{Keys, MemoryStore, RedisStore, Store};

/// Shared, cheap-to-clone runtime context.
#[derive(Clone)]
pub struct Context {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Connection, subscription and presence state.
    pub store: Arc<dyn Store>,
    /// Posts frames to connections.
    pub connections_api: Arc<dyn ConnectionsApi>,
    /// SQS, when queues are configured (webhooks, asynchronous fan-out).
    pub queues: Option<Arc<Queues>>,
    /// The pace of posts against the account's `@connections` quota,
    /// shared by every fan-out of this instance.
    pub pacer: Arc<Pacer>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    /// A context over an existing store (tests, the emulator), posting with
    /// local credentials (right for the emulator's `@connections`).
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Context {
            config: Arc::new(config),
            store,
            connections_api: Arc::new(ManagementApi::local()),
            queues: None,
            pacer: Arc::default(),
        }
    }

    /// The same context posting through another `@connections` client.
    pub fn with_connections_api(self, connections_api: Arc<dyn ConnectionsApi>) -> Self {
        Context { connections_api, ..self }
    }

    /// The same context sending to these queues (their URLs replace the configured ones).
    pub fn with_queues(self, queues: Queues) -> Self {
        let mut config = (*self.config).clone();
        config.queues = queues.urls.clone();
        Context { config: Arc::new(config), queues: Some(Arc::new(queues)), ..self }
    }

    /// The SQS client and the webhook deliveries queue's URL, when both are set.
    pub fn webhook_queue(&self) -> Option<(&Queues, &str)> {
        Some((self.queues.as_deref()?, self.config.queues.webhooks.as_deref()?))
    }

    /// The SQS client and the webhook dead-letter queue's URL, when both are set.
    pub fn webhook_dlq(&self) -> Option<(&Queues, &str)> {
        Some((self.queues.as_deref()?, self.config.queues.webhooks_dlq.as_deref()?))
    }

    /// The SQS client and the events queue's URL, when both are set.
    pub fn events_queue(&self) -> Option<(&Queues, &str)> {
        Some((self.queues.as_deref()?, self.config.queues.events.as_deref()?))
    }

    /// The store the configuration asks for: Redis when `REDIS_URL` is set,
    /// memory otherwise.
    pub fn from_config(config: Config) -> Self {
        let store: Arc<dyn Store> = match &config.redis {
            Some(redis) => {
                Arc::new(RedisStore::new(redis.clone(), Keys::new(&config.key_prefix), config.limits.clone()))
            }
            None => Arc::new(MemoryStore::new(config.limits.clone())),
        };
        Context::new(config, store)
    }

    /// For a Lambda function: reads the environment, insists on Redis (the
    /// only store shared between function instances) and posts with the
    /// function's AWS credentials.
    pub async fn for_function() -> Result<Self, ConfigError> {
        // REDIS_PASSWORD_ARN: the password comes from Secrets Manager, not the environment.
        let secrets = crate::secrets::from_env().await?;
        let config = Config::from_lookup(&crate::secrets::overlay(&secrets))?;
        config.require_redis()?;
        let urls = config.queues.clone();
        let ctx = Context::from_config(config).with_connections_api(Arc::new(ManagementApi::from_env().await));
        if urls == QueueUrls::default() {
            return Ok(ctx);
        }
        Ok(ctx.with_queues(Queues::from_env(urls).await))
    }
}
