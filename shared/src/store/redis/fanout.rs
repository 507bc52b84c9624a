use std::sync::LazyLock;

use ::redis::Script;
use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::ids::TenantId;
use crate::store::{Claim, ClaimSettings, FanoutStore, Settled, StoreResult};

/// A script in `lua/fanout_claim.lua`, which opens with its KEYS/ARGV contract.
static FANOUT_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fanout_claim.lua")));

/// A script in `lua/fanout_settle.lua`, which opens with its KEYS/ARGV contract.
static FANOUT_SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fanout_settle.lua")));

#[async_trait]
impl FanoutStore for RedisStore {
    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        job: &str,
        members: &[String],
        claims: &ClaimSettings,
    ) -> StoreResult<Vec<Claim>> {
        if members.is_empty() {
            return Ok(vec![]);
        }
        let mut inv = FANOUT_CLAIM.key(self.keys.sent(tenant, job));
        inv.key(self.keys.sent_done(tenant, job)).key(self.keys.fanouts(tenant));
        inv.arg(crate::time::now_millis()).arg(Self::millis(claims.lease)).arg(Self::millis(claims.ttl));
        inv.arg(claims.max_live_jobs);
        for m in members {
            inv.arg(m.as_str());
        }
        let claimed: Vec<u8> = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(claimed
            .into_iter()
            .map(|c| match c {
                1 => crate::store::Claim::Mine,
                2 => crate::store::Claim::Busy,
                _ => crate::store::Claim::Sent,
            })
            .collect())
    }

    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: Settled<'_>,
        claims: &ClaimSettings,
    ) -> StoreResult<()> {
        let mut inv = FANOUT_SETTLE.key(self.keys.sent(tenant, job));
        inv.key(self.keys.sent_done(tenant, job)).key(self.keys.fanouts(tenant));
        inv.arg(Self::millis(claims.ttl));
        match settled {
            crate::store::Settled::Finished => {
                inv.arg(1).arg(0);
            }
            crate::store::Settled::Partly { sent, released } => {
                if sent.is_empty() && released.is_empty() {
                    return Ok(());
                }
                inv.arg(0).arg(sent.len());
                for m in sent.iter().chain(released) {
                    inv.arg(m.as_str());
                }
            }
        }
        inv.invoke_async::<()>(&mut self.conn().await?).await.map_err(unavailable)
    }
}
