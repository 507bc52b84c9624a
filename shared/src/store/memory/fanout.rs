use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;

use super::MemoryStore;
use crate::ids::TenantId;
use crate::store::{Claim, ClaimSettings, FanoutStore, Settled, StoreError, StoreResult};

#[async_trait]
impl FanoutStore for MemoryStore {
    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        job: &str,
        members: &[String],
        claims: &ClaimSettings,
    ) -> StoreResult<Vec<Claim>> {
        use crate::store::Claim;
        self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            let now = Instant::now();
            t.sent.retain(|_, (_, exp)| *exp > now);
            t.sent_done.retain(|_, exp| *exp > now);
            if t.sent_done.contains_key(job) {
                return Ok(vec![Claim::Sent; members.len()]);
            }
            if !t.sent.contains_key(job) && t.sent.len() >= claims.max_live_jobs {
                return Err(StoreError::Unavailable(format!(
                    "TOO_MANY_FANOUTS the tenant has {} queued fan-outs in flight",
                    claims.max_live_jobs
                )));
            }
            let (held, exp) = t.sent.entry(job.to_owned()).or_insert_with(|| (HashMap::new(), now));
            *exp = now + claims.ttl;
            Ok(members
                .iter()
                .map(|m| match held.get(m) {
                    Some(None) => Claim::Sent,
                    Some(Some(lease)) if *lease > now => Claim::Busy,
                    _ => {
                        held.insert(m.clone(), Some(now + claims.lease));
                        Claim::Mine
                    }
                })
                .collect())
        })
    }

    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: Settled<'_>,
        claims: &ClaimSettings,
    ) -> StoreResult<()> {
        self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            match settled {
                crate::store::Settled::Finished => {
                    t.sent.remove(job);
                    t.sent_done.insert(job.to_owned(), Instant::now() + claims.ttl);
                }
                crate::store::Settled::Partly { sent, released } => {
                    if let Some((held, _)) = t.sent.get_mut(job) {
                        for m in sent {
                            held.insert(m.clone(), None);
                        }
                        for m in released {
                            held.remove(m);
                        }
                    }
                }
            }
        });
        Ok(())
    }
}
