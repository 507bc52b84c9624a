//! Each tenant's requests per second, shared by every instance.

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::TenantId;

/// A budget of requests per second per tenant.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one request against the tenant's budget of `limit` per
    /// second; false when the budget is spent. Shared by every instance.
    async fn rate_limit(&self, tenant: &TenantId, limit: u32) -> StoreResult<bool> {
        self.rate_limit_n(tenant, limit, 1).await
    }

    /// Counts `n` requests at once (a batch publish of `n` events); false
    /// when they do not all fit in what is left of the budget.
    async fn rate_limit_n(&self, tenant: &TenantId, limit: u32, n: u32) -> StoreResult<bool>;
}
