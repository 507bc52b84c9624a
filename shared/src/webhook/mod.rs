//! Webhook signing and verification, and the retry schedule.
//!
//! Every delivery carries two signatures of the same body:
//!
//! - the legacy hub's `X-Webhook-Signature`: hex HMAC-SHA256 of the body, keyed by
//!   the webhook's secret string as stored (what the legacy hub's receivers check);
//! - the Standard Webhooks `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//!   "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the base64-decoded
//!   part of a `whsec_...` secret, so off-the-shelf verifiers work. During a
//!   secret rotation both the new and the old signature are sent,
//!   space-separated.
//!
//! Signing is a pure function, tested against fixed vectors and against the
//! published `standardwebhooks` crate. [`verify_signature`] is what a Rust
//! receiver calls: constant-time comparison, timestamp tolerance.
//!
//! The retry schedule is data ([`RetrySchedule`]): a list of delays, with
//! jitter, so tests shrink it and operators tune it.
//!
//! The parts: `signing` (secrets, signatures, verification), `schedule`
//! (retries), `model` (configuration, delivery, log entry), `send` (one
//! attempt), `decide` (what becomes of a delivery after an attempt, and
//! the dead letter's shape): everything here is free of I/O but the one
//! POST. Acting on a decision (the store, the queues) is `webhook_delivery`'s.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ids::WebhookId;

type HmacSha256 = Hmac<Sha256>;

mod decide;
mod model;
mod schedule;
mod send;
mod signing;

pub use decide::*;
pub use model::*;
pub use schedule::*;
pub use send::*;
pub use signing::*;

/// The most retries a webhook may ask for (`retry_count`). The webhook
/// queue's redrive `maxReceiveCount` is this + 2 (the first attempt, and
/// one spare), in the SAM template and the emulator alike.
pub const MAX_RETRY_COUNT: u32 = 10;

#[cfg(test)]
mod tests;
