//! What becomes of a queued delivery after an attempt, and what a dead
//! letter holds: pure functions and data, so every rule of the policy is
//! tested without a receiver, a queue or a store (`webhook_delivery` acts
//! on the answer).

use super::*;

/// The retry policy one delivery is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Retries<'a> {
    /// Attempts in all: the webhook's `retry_count` + 1.
    pub max_attempts: u32,
    /// The waits between attempts.
    pub schedule: &'a RetrySchedule,
    /// How long the queue keeps a message after it was sent.
    pub retention: Duration,
}

/// When the attempt was made, and the queue message it came from.
#[derive(Debug, Clone, Copy)]
pub struct When {
    /// Now (Unix ms).
    pub now_ms: i64,
    /// When the message was first sent to the queue (Unix ms).
    pub sent_ms: i64,
    /// In [0, 1): the point in the schedule's jitter band (random in
    /// production, fixed in tests).
    pub jitter: f64,
}

/// The decision after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the log says of the attempt.
    pub status: LogStatus,
    /// `Failed`: the wait before the next attempt.
    pub retry_in: Option<Duration>,
    /// Why a retry became a dead letter (it would have outlived the queue's retention).
    pub note: Option<String>,
}

/// Attempt `attempt` (1-based) came to `outcome`: delivered, gone, retried
/// after the schedule's wait (a `Retry-After` honoured), or dead (a
/// rejection, the last attempt, or a retry past the queue's retention).
pub fn decide(outcome: &Outcome, attempt: u32, retries: &Retries<'_>, when: When) -> Decision {
    let (status, retry_in) = match outcome {
        Outcome::Delivered => (LogStatus::Delivered, None),
        Outcome::Gone => (LogStatus::Gone, None),
        Outcome::Retry { retry_after } if attempt < retries.max_attempts => {
            let scheduled = retries.schedule.delay_after(attempt, when.jitter);
            (LogStatus::Failed, Some(retries.schedule.with_retry_after(scheduled, *retry_after)))
        }
        Outcome::Retry { .. } | Outcome::Rejected => (LogStatus::Dead, None),
    };
    // The queue keeps a message `retention` after it was sent: a retry
    // scheduled past that would expire unseen. Dead-letter it now instead.
    match retry_in {
        Some(wait) if !RetrySchedule::fits_retention(when.sent_ms, when.now_ms, wait, retries.retention) => Decision {
            status: LogStatus::Dead,
            retry_in: None,
            note: Some(format!(
                "the next attempt (in {} s) would come after the queue's {} s retention; dead-lettered",
                wait.as_secs(),
                retries.retention.as_secs()
            )),
        },
        retry_in => Decision { status, retry_in, note: None },
    }
}

/// Why the webhook is disabled after an attempt, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disable {
    /// The receiver answered 410 Gone.
    Gone,
    /// Every attempt failed for longer than `WEBHOOK_DISABLE_AFTER_SECS`:
    /// the reason, which the tenant hears as a `system.alert`.
    FailingTooLong(String),
}

impl Disable {
    /// The reason stored with the disabled webhook.
    pub fn reason(&self) -> &str {
        match self {
            Disable::Gone => "the receiver answered 410 Gone",
            Disable::FailingTooLong(reason) => reason,
        }
    }
}

/// After an attempt with `outcome`, its endpoint failing since
/// `failing_since` (the breaker's record once the attempt is counted): is
/// the webhook disabled?
pub fn disable(outcome: &Outcome, failing_since: Option<i64>, now_ms: i64, after: Duration) -> Option<Disable> {
    if *outcome == Outcome::Gone {
        return Some(Disable::Gone);
    }
    let since = failing_since.filter(|since| now_ms - since >= after.as_millis() as i64)?;
    Some(Disable::FailingTooLong(format!("failing since {} (every attempt for {} s)", since, (now_ms - since) / 1000)))
}

/// What the webhook dead-letter queue holds: one shape for every producer
/// (a final failure, a stored webhook that does not parse, a record that is
/// not a delivery, a delivery the webhook queue refused), each with the
/// fields it knows.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The delivery, when the record was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// The record's body, when it was not a delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Attempts made (0: never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The last attempt's log entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<LogEntry>,
    /// Why, when no attempt says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was dead-lettered (Unix ms).
    pub dead_at: i64,
}

impl DeadLetter {
    /// The letter as the queue takes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter is plain JSON")
    }
}
