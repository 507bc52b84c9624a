//! `switchboard`: the runtime every Switchboard function links.
//!
//! Functions are stateless AWS-Lambda-style handlers; this crate holds what
//! they share, so that a handler is a short `async fn` over a [`Context`].
//!
//! # Layout
//!
//! The modules form a one-way stack: each uses only those above it
//! (`tests/layering.rs` reads the sources and fails on a cycle).
//!
//! - [`channel`]: channel names (`queue:support`), the patterns that
//!   name several, and the grants a token carries.
//! - [`ids`], [`time`], [`ssrf`], [`telemetry`]: plain parts. Validated
//!   tenant, user and connection ids, and the caller's [`ids::Role`] and
//!   [`ids::Identity`]; the clock; the guard that keeps webhook deliveries
//!   out of internal networks; logging set-up; [`metrics`], one set of
//!   names for CloudWatch EMF (Lambda) and Prometheus (the emulator).
//! - [`namespaces`]: the channel namespaces and what each role may do in
//!   them (permissions as data, validated at cold start).
//! - [`event`]: what happened and who it is for. The catalogue, the
//!   envelope, its verified sender, the [`event::Target`].
//! - [`protocol`]: the wire contract between a client and the gateway
//!   (actions, replies, error codes, the fan-out [`protocol::Report`]).
//!   It uses only `event` and `ids`: a client crate could use it without
//!   Redis or the AWS SDK.
//! - [`aws`]: the AWS SDK's configuration, loaded once per process.
//! - [`connections_api`]: posting to connections through `@connections`, paced to
//!   the account's quota.
//! - [`webhook`]: signatures (the legacy hub's and Standard Webhooks), the
//!   retry schedule, the stored model, sending one attempt.
//! - [`config`]: the environment, read once and validated.
//! - [`auth`]: JWT verification, token extraction, the Origin allowlist,
//!   what each role may publish.
//! - [`queue`], [`secrets`]: SQS, and secrets read from Secrets Manager at
//!   cold start.
//! - [`store`]: connection, subscription, presence, offline and webhook
//!   state (Redis in production, memory in the emulator).
//! - [`apigw_event`]: helpers over the API Gateway event types.
//! - [`context`]: what a handler gets: configuration, store, gateway, queues.
//! - [`broadcast`]: one call routes an event to every connection and
//!   webhook that should have it; queued fan-out; the sweep of ghost
//!   connections.
//! - [`webhook_delivery`]: delivering one queued webhook delivery (read
//!   the webhook and its health, send, record, decide, act) and the API's
//!   synchronous attempts.

pub mod apigw_event;
pub mod auth;
pub mod aws;
pub mod broadcast;
pub mod channel;
pub mod config;
pub mod connections_api;
pub mod context;
pub mod event;
pub mod ids;
pub mod metrics;
pub mod namespaces;
pub mod protocol;
pub mod queue;
pub mod secrets;
pub mod ssrf;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod webhook;
pub mod webhook_delivery;

pub use context::Context;
