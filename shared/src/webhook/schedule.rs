//! The retry schedule: delays with jitter, as data.

use super::*;

/// Delays between delivery attempts: attempt `n` (1-based) failed, the next
/// one waits `delays[n-1]`, give or take `jitter` (a fraction). Past the end
/// of the list the last delay repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Base delays, in order.
    pub delays: Vec<Duration>,
    /// ± this fraction of each delay, so retries of many deliveries spread out.
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's schedule, within SQS's 12-hour visibility limit).
    fn default() -> Self {
        let secs = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        RetrySchedule { delays: secs.iter().map(|s| Duration::from_secs(*s)).collect(), jitter: 0.2 }
    }
}

impl RetrySchedule {
    /// The wait after failed attempt `attempt` (1-based); `unit` in [0, 1)
    /// picks the point in the jitter band (random in production, fixed in tests).
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let Some(last) = self.delays.last() else { return Duration::ZERO };
        let base = self.delays.get(attempt.saturating_sub(1) as usize).unwrap_or(last);
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// Would a retry `wait` from `now_ms` still find its message in a queue
    /// that keeps messages `retention` after `sent_ms`? A margin of ten
    /// minutes covers the visibility timeout and the clocks. When it would
    /// not, the delivery is dead-lettered now: a message that expires is
    /// gone without a dead letter or a log line.
    pub fn fits_retention(sent_ms: i64, now_ms: i64, wait: Duration, retention: Duration) -> bool {
        const MARGIN_MS: i64 = 10 * 60 * 1000;
        now_ms + wait.as_millis() as i64 <= sent_ms + retention.as_millis() as i64 - MARGIN_MS
    }

    /// A `Retry-After` the receiver sent, clamped into [the scheduled delay, 12 h]:
    /// honoured when it asks for more time, never below our own backoff.
    pub fn with_retry_after(&self, scheduled: Duration, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_secs(12 * 3600);
        retry_after.map_or(scheduled, |r| r.max(scheduled)).min(cap)
    }
}

/// Parses a schedule such as `5s,5m,30m,2h` (a bare number is seconds),
/// what `WEBHOOK_RETRY_SCHEDULE` holds.
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (digits, unit) = item.split_at(item.find(|c: char| !c.is_ascii_digit()).unwrap_or(item.len()));
            let n: u64 = digits.parse().map_err(|_| format!("'{item}' is not a duration like 30s, 5m or 2h"))?;
            let secs = match unit {
                "" | "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => return Err(format!("'{item}' has unit '{unit}'; use s, m or h")),
            };
            if secs > 12 * 3600 {
                return Err(format!("'{item}' is over 12 h, SQS's longest visibility timeout"));
            }
            Ok(Duration::from_secs(secs))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| if v.is_empty() { Err("is empty".into()) } else { Ok(v) })
}
