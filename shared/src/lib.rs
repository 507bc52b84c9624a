//! `switchboard`: the runtime every Switchboard function links.
//!
//! Functions are stateless AWS-Lambda-style handlers; this crate holds what
//! they share, so that a handler is a short `async fn` over a [`Context`]:
//!
//! - [`config`]: the environment, read once and validated;
//! - [`auth`]: JWT verification, token extraction, the Origin allowlist;
//! - [`ids`]: validated tenant, user and connection ids;
//! - [`event`]: the event catalogue and the envelope;
//! - [`protocol`]: what clients send and what they get back;
//! - [`store`]: connection, subscription, presence and offline state
//!   (Redis in production, memory in the emulator);
//! - [`gateway`]: posting to connections through `@connections`;
//! - [`broadcast`]: one call routes an event to every connection that should have it;
//! - [`apigw`]: helpers over the API Gateway event types;
//! - [`secrets`]: secrets read from Secrets Manager at cold start;
//! - [`ssrf`]: the guard that keeps webhook deliveries out of internal networks;
//! - [`webhook`]: webhook signatures (the seed's and Standard Webhooks), verification, retry schedule;
//! - [`telemetry`]: logging setup.

pub mod apigw;
pub mod auth;
pub mod broadcast;
pub mod config;
pub mod context;
pub mod event;
pub mod gateway;
pub mod ids;
pub mod protocol;
pub mod queue;
pub mod secrets;
pub mod ssrf;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod webhook;

pub use context::Context;
