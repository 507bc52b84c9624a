use std::sync::LazyLock;

use ::redis::Script;
use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::ids::TenantId;
use crate::store::{RateLimitStore, StoreResult};

/// KEYS: rate-limit counter. ARGV: limit, requests. Returns 1 while within the limit.
static RATE_LIMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local n = redis.call('INCRBY', KEYS[1], ARGV[2])\n\
         if n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], 2000) end\n\
         return n <= tonumber(ARGV[1]) and 1 or 0",
    )
});

#[async_trait]
impl RateLimitStore for RedisStore {
    async fn rate_limit_n(&self, tenant: &TenantId, limit: u32, n: u32) -> StoreResult<bool> {
        let key = self.keys.rate_limit(tenant, crate::time::now_millis() / 1000);
        let allowed: u8 =
            RATE_LIMIT.key(key).arg(limit).arg(n).invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(allowed == 1)
    }
}
