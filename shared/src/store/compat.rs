//! The legacy hub's pub/sub channels, for services that still listen to them.

use async_trait::async_trait;

use super::StoreResult;
use crate::event::EventType;
use crate::ids::TenantId;

/// PUBLISH on the legacy hub's channels.
#[async_trait]
pub trait CompatStore: Send + Sync {
    /// PUBLISHes an event on the legacy hub's channels (`{p}:events` and, for
    /// agent, call and queue events, `{p}:agents:<tenant>` and so on), for
    /// services that still listen to the legacy hub. A no-op without Redis.
    async fn publish_compat(&self, tenant: &TenantId, event: EventType, message: &str) -> StoreResult<()>;
}
