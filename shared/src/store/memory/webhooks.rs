use async_trait::async_trait;

use super::MemoryStore;
use crate::ids::TenantId;
use crate::store::{
    AttemptRecord, AttemptStats, Breaker, Health, LogBounds, LogQuery, LogRecord, STATS_BUCKETS, StoreResult,
    WebhookStore, stats_bucket, stats_window,
};
use crate::webhook::WebhookConfig;

/// The `<ms>-<seq>` entry id's parts, for comparisons.
fn log_id_key(id: &str) -> (i64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn save_webhook(&self, tenant: &TenantId, hook: &WebhookConfig) -> StoreResult<()> {
        self.with(|state| state.entry(tenant.clone()).or_default().webhooks.insert(hook.id.to_string(), hook.clone()));
        Ok(())
    }

    async fn webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<WebhookConfig>> {
        Ok(self.with(|state| state.get(tenant)?.webhooks.get(id).cloned()))
    }

    async fn webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<WebhookConfig>> {
        Ok(self.with(|state| state.get(tenant).map(|t| t.webhooks.values().cloned().collect()).unwrap_or_default()))
    }

    async fn webhook_count(&self, tenant: &TenantId) -> StoreResult<usize> {
        Ok(self.with(|state| state.get(tenant).map_or(0, |t| t.webhooks.len())))
    }

    async fn webhook_and_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<WebhookConfig>, Health)> {
        Ok(self.with(|state| match state.get(tenant) {
            None => (None, Health::default()),
            Some(t) => (t.webhooks.get(id).cloned(), t.health.get(id).copied().unwrap_or_default()),
        }))
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|state| state.get_mut(tenant).is_some_and(|t| t.webhooks.remove(id).is_some())))
    }

    async fn webhook_attempt(
        &self,
        tenant: &TenantId,
        a: &AttemptRecord<'_>,
        breaker: Breaker,
        log: LogBounds,
    ) -> StoreResult<Health> {
        let (webhook_id, success, now_ms) = (a.webhook_id, a.success, a.at_ms);
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            // Entry ids are the clock's, as Redis's XADD * makes them.
            let clock = crate::time::now_millis();
            let (last_ms, last_seq) = t.log_last;
            t.log_last = if clock > last_ms { (clock, 0) } else { (last_ms, last_seq + 1) };
            let id = format!("{}-{}", t.log_last.0, t.log_last.1);
            t.log.push_back((id, webhook_id.to_owned(), a.delivery_id.to_owned(), a.entry.to_owned()));
            while t.log.len() > log.max_entries.max(1) {
                t.log.pop_front();
            }
            let oldest = clock - log.max_age_ms;
            while t.log.front().is_some_and(|(id, ..)| log_id_key(id).0 < oldest) {
                t.log.pop_front();
            }
            let bucket = stats_bucket(now_ms);
            t.stats.retain(|(_, b), _| *b > bucket - 2 * STATS_BUCKETS);
            t.stats.entry((webhook_id.to_owned(), bucket)).or_default().add(crate::store::AttemptStats::of(a));
            if success {
                t.health.remove(webhook_id);
                return Health::default();
            }
            let h = t.health.entry(webhook_id.to_owned()).or_default();
            h.consecutive_failures += 1;
            h.failing_since.get_or_insert(now_ms);
            if breaker.threshold > 0 && h.consecutive_failures >= breaker.threshold {
                h.paused_until = Some(now_ms + breaker.cooldown_ms);
            }
            *h
        }))
    }

    async fn webhook_stats(&self, tenant: &TenantId, webhook_id: &str, now_ms: i64) -> StoreResult<AttemptStats> {
        Ok(self.with(|state| {
            let mut total = crate::store::AttemptStats::default();
            let Some(t) = state.get(tenant) else { return total };
            for bucket in stats_window(now_ms) {
                if let Some(b) = t.stats.get(&(webhook_id.to_owned(), bucket)) {
                    total.add(*b);
                }
            }
            total
        }))
    }

    async fn webhook_health(&self, tenant: &TenantId, webhook_id: &str) -> StoreResult<Health> {
        Ok(self.with(|state| state.get(tenant).and_then(|t| t.health.get(webhook_id).copied()).unwrap_or_default()))
    }

    async fn webhook_log(&self, tenant: &TenantId, q: &LogQuery<'_>) -> StoreResult<Vec<LogRecord>> {
        let before = q.before.map(log_id_key);
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else { return vec![] };
            t.log
                .iter()
                .rev()
                .filter(|(id, ..)| before.is_none_or(|b| log_id_key(id) < b))
                .take_while(|(id, ..)| q.since_ms.is_none_or(|s| log_id_key(id).0 >= s))
                .filter(|(_, w, d, _)| w == q.webhook_id && q.delivery_id.is_none_or(|want| want == d))
                .take(q.limit)
                .map(|(id, _, _, entry)| LogRecord { id: id.clone(), entry: entry.clone() })
                .collect()
        }))
    }
}
