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
    /// Anything else (throttling, network, 5xx); the connection is kept.
    Failed(String),
}

/// Sends frames to connections.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
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
        ManagementApi { base: base.timeout_config(timeouts), clients: RwLock::new(HashMap::new()) }
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
impl Gateway for ManagementApi {
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
                _ => PostOutcome::Failed(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string()),
            },
        }
    }
}
