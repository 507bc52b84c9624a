use async_trait::async_trait;

use super::{MemoryStore, Tenant};
use crate::ids::TenantId;
use crate::store::{HistoryRead, RateLimitStore, StoreResult, read_cost};

impl Tenant {
    /// Counts one request against `limit` per second.
    pub(super) fn within_limit(&mut self, limit: u32) -> bool {
        self.within_limit_n(limit, 1)
    }

    /// Counts `n` requests against `limit` per second.
    fn within_limit_n(&mut self, limit: u32, n: u32) -> bool {
        let second = crate::time::now_millis() / 1000;
        if self.rate_window.0 != second {
            self.rate_window = (second, 0);
        }
        self.rate_window.1 = self.rate_window.1.saturating_add(n);
        self.rate_window.1 <= limit
    }

    /// What a history read costs beyond the request `within_limit` counted.
    pub(super) fn charge(&mut self, read: &HistoryRead) {
        self.rate_window.1 = self.rate_window.1.saturating_add(read_cost(read));
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn rate_limit_n(&self, tenant: &TenantId, limit: u32, n: u32) -> StoreResult<bool> {
        Ok(self.with(|state| state.entry(tenant.clone()).or_default().within_limit_n(limit, n)))
    }
}
