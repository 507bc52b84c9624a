use std::sync::LazyLock;

use ::redis::{Cmd, Script};
use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::ids::TenantId;
use crate::store::webhooks::{parse_listed_webhooks, parse_webhook};
use crate::store::{
    AttemptRecord, AttemptStats, Breaker, Health, LogBounds, LogQuery, LogRecord, STATS_BUCKET_MS, STATS_BUCKETS,
    StoreResult, WebhookStore, stats_bucket, stats_window,
};
use crate::webhook::WebhookConfig;

/// How long an endpoint's health outlives its last failure (30 days).
const HEALTH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// A script in `lua/webhook_attempt.lua`, which opens with its KEYS/ARGV contract.
static WEBHOOK_ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/webhook_attempt.lua")));

/// A script in `lua/webhook_log.lua`, which opens with its KEYS/ARGV contract.
static WEBHOOK_LOG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/webhook_log.lua")));

/// An endpoint's health hash: failures, since, paused_until.
type HealthFields = (Option<u32>, Option<i64>, Option<i64>);

fn health_from((n, since, paused): HealthFields) -> Health {
    Health { consecutive_failures: n.unwrap_or(0), failing_since: since, paused_until: paused }
}

impl RedisStore {
    /// HMGET of an endpoint's health fields (see [`health_from`]).
    fn health_fields(&self, tenant: &TenantId, webhook_id: &str) -> Cmd {
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.keys.webhook_health(tenant, webhook_id)).arg("failures").arg("since").arg("paused_until");
        cmd
    }
}

#[async_trait]
impl WebhookStore for RedisStore {
    async fn save_webhook(&self, tenant: &TenantId, hook: &WebhookConfig) -> StoreResult<()> {
        let text = serde_json::to_string(hook).expect("a webhook is plain JSON");
        ::redis::cmd("HSET")
            .arg(self.keys.webhooks(tenant))
            .arg(hook.id.as_str())
            .arg(text)
            .query_async::<()>(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }

    async fn webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<WebhookConfig>> {
        let key = self.keys.webhooks(tenant);
        let raw: Option<String> =
            ::redis::cmd("HGET").arg(key).arg(id).query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        raw.map(|raw| parse_webhook(tenant, id, &raw)).transpose()
    }

    async fn webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<WebhookConfig>> {
        let key = self.keys.webhooks(tenant);
        let raw: Vec<String> =
            ::redis::cmd("HVALS").arg(key).query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(parse_listed_webhooks(tenant, &raw))
    }

    async fn webhook_count(&self, tenant: &TenantId) -> StoreResult<usize> {
        let key = self.keys.webhooks(tenant);
        ::redis::cmd("HLEN").arg(key).query_async(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let key = self.keys.webhooks(tenant);
        let removed: u32 =
            ::redis::cmd("HDEL").arg(key).arg(id).query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn webhook_attempt(
        &self,
        tenant: &TenantId,
        a: &AttemptRecord<'_>,
        breaker: Breaker,
        log: LogBounds,
    ) -> StoreResult<Health> {
        let bucket = stats_bucket(a.at_ms);
        let (n, since, paused): (u32, String, String) = WEBHOOK_ATTEMPT
            .key(self.keys.webhook_log(tenant))
            .key(self.keys.webhook_health(tenant, a.webhook_id))
            .key(self.keys.webhook_stats(tenant, a.webhook_id, bucket))
            .arg(a.webhook_id)
            .arg(a.delivery_id)
            .arg(a.entry)
            .arg(u8::from(a.success))
            .arg(a.at_ms)
            .arg(breaker.threshold)
            .arg(breaker.cooldown_ms)
            .arg(log.max_entries)
            .arg(HEALTH_TTL_MS)
            .arg(crate::time::now_millis() - log.max_age_ms)
            .arg(u8::from(a.first))
            .arg(u8::from(a.dead))
            .arg(a.duration_ms)
            .arg(2 * STATS_BUCKETS * STATS_BUCKET_MS)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(Health { consecutive_failures: n, failing_since: since.parse().ok(), paused_until: paused.parse().ok() })
    }

    async fn webhook_stats(&self, tenant: &TenantId, webhook_id: &str, now_ms: i64) -> StoreResult<AttemptStats> {
        // The buckets share the tenant's slot: one pipelined round trip.
        let mut pipe = ::redis::pipe();
        for bucket in stats_window(now_ms) {
            pipe.cmd("HMGET").arg(self.keys.webhook_stats(tenant, webhook_id, bucket)).arg(&["a", "s", "d", "n", "l"]);
        }
        let buckets: Vec<[Option<u64>; 5]> = pipe.query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        let mut total = crate::store::AttemptStats::default();
        for [a, s, d, n, l] in buckets {
            total.add(AttemptStats {
                attempts: a.unwrap_or(0),
                succeeded: s.unwrap_or(0),
                dead: d.unwrap_or(0),
                deliveries: n.unwrap_or(0),
                duration_ms: l.unwrap_or(0),
            });
        }
        Ok(total)
    }

    async fn webhook_health(&self, tenant: &TenantId, webhook_id: &str) -> StoreResult<Health> {
        let fields = self.health_fields(tenant, webhook_id).query_async(&mut self.conn().await?).await;
        Ok(health_from(fields.map_err(unavailable)?))
    }

    async fn webhook_and_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<WebhookConfig>, Health)> {
        // Both keys carry the tenant's hash tag: one slot, one pipelined round trip.
        let (config, fields): (Option<String>, HealthFields) = ::redis::pipe()
            .hget(self.keys.webhooks(tenant), id)
            .add_command(self.health_fields(tenant, id))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        let config: Option<String> = config;
        Ok((config.map(|raw| parse_webhook(tenant, id, &raw)).transpose()?, health_from(fields)))
    }

    async fn webhook_log(&self, tenant: &TenantId, q: &LogQuery<'_>) -> StoreResult<Vec<LogRecord>> {
        if q.limit == 0 {
            return Ok(vec![]);
        }
        let flat: Vec<String> = WEBHOOK_LOG
            .key(self.keys.webhook_log(tenant))
            .arg(q.webhook_id)
            .arg(q.delivery_id.unwrap_or_default())
            .arg(q.before.unwrap_or_default())
            .arg(q.since_ms.map(|m| m.to_string()).unwrap_or_default())
            .arg(q.limit)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(flat.chunks_exact(2).map(|p| LogRecord { id: p[0].clone(), entry: p[1].clone() }).collect())
    }
}
