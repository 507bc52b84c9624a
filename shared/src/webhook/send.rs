//! Sending one attempt: the request, the response excerpt, the outcome.

use super::*;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 410: the receiver is gone for good; disable the webhook.
    Gone,
    /// 408, 429, 5xx, 3xx, timeouts and connection errors: try again later
    /// (no sooner than `retry_after` if the receiver said so).
    Retry {
        /// The receiver's `Retry-After`, in seconds form.
        retry_after: Option<Duration>,
    },
    /// Any other 4xx, or a URL the policy refuses: retrying will not help.
    Rejected,
}

impl Outcome {
    /// The log's status for a single attempt with no retry policy behind
    /// it (a test or a replay); the webhook function decides between
    /// `failed` and `dead` by its schedule.
    pub fn status(&self) -> LogStatus {
        match self {
            Outcome::Delivered => LogStatus::Delivered,
            Outcome::Gone => LogStatus::Gone,
            Outcome::Retry { .. } => LogStatus::Failed,
            Outcome::Rejected => LogStatus::Rejected,
        }
    }
}

/// The longest response-body excerpt kept in the log.
pub const RESPONSE_EXCERPT_BYTES: usize = 20 * 1024;

/// The record of one attempt (the delivery log's entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first try.
    pub attempt: u32,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The first 20 KB of the response body.
    pub body_excerpt: String,
    /// Transport or policy error, when there was no response.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// What to do next.
    pub outcome: Outcome,
}

/// Reads at most `max` bytes of a response body, then drops the response
/// (closing its connection): a receiver answering 400 MB must not cost a
/// function 400 MB. The read is bounded in time by the request's timeout,
/// which covers the body too; what arrived before an error or the timeout
/// is kept. Cut back to a character boundary, never mid-character.
pub async fn read_excerpt(mut response: reqwest::Response, max: usize) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk[..chunk.len().min(max - bytes.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    drop(response);
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            // Invalid bytes mid-body are shown replaced; a character cut at the end is dropped.
            if cut_mid_character(&bytes, valid) {
                String::from_utf8_lossy(&bytes[..valid]).into_owned()
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// Is everything after `valid` the start of one multi-byte character (cut by the limit)?
fn cut_mid_character(bytes: &[u8], valid: usize) -> bool {
    let tail = &bytes[valid..];
    !tail.is_empty() && tail.len() < 4 && std::str::from_utf8(tail).is_err_and(|e| e.error_len().is_none())
}

/// Sends one attempt: the legacy hub's payload and headers plus the Standard
/// Webhooks headers, signed with `secrets` (current first, then any in
/// their rotation grace period), through `client` (see
/// [`crate::ssrf::delivery_client`]) within the webhook's timeout. The URL
/// is checked against `policy` again first: a stored URL may predate a
/// stricter policy.
pub async fn send(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    secrets: &[Secret],
    delivery: &Delivery,
    attempt: u32,
    policy: crate::ssrf::UrlPolicy,
) -> Attempt {
    let started = std::time::Instant::now();
    let done = |status, body_excerpt, error, outcome| Attempt {
        attempt,
        status,
        body_excerpt,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        outcome,
    };
    let url = match crate::ssrf::check_url(&hook.url, policy) {
        Ok(url) => url,
        Err(e) => return done(None, String::new(), Some(e.to_string()), Outcome::Rejected),
    };
    let body = delivery.payload();
    let now = crate::time::now_millis() / 1000;
    let seed = secrets.first().map(|s| legacy_signature(s, &body)).unwrap_or_default();
    let request = client
        .post(url)
        .timeout(Duration::from_secs(u64::from(hook.timeout.max(1))))
        .header("content-type", "application/json")
        .header("x-webhook-event", delivery.event.as_str())
        .header("x-webhook-id", hook.id.as_str())
        .header("x-webhook-attempt", attempt.to_string())
        .header("x-webhook-signature", seed)
        .header("webhook-id", &delivery.delivery_id)
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            signature_header(&secrets.iter().collect::<Vec<_>>(), &delivery.delivery_id, now, &body),
        )
        .body(body);
    match request.send().await {
        Err(e) => {
            // Without the URL: this text is logged, and the URL may be a credential.
            let e = e.without_url();
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                message = format!("{message}: {inner}");
                source = inner.source();
            }
            done(None, String::new(), Some(message), Outcome::Retry { retry_after: None })
        }
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let excerpt = read_excerpt(response, RESPONSE_EXCERPT_BYTES).await;
            let outcome = match status.as_u16() {
                200..=299 => Outcome::Delivered,
                410 => Outcome::Gone,
                408 | 429 => Outcome::Retry { retry_after },
                400..=499 => Outcome::Rejected,
                _ => Outcome::Retry { retry_after },
            };
            done(Some(status.as_u16()), excerpt, None, outcome)
        }
    }
}
