use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::event::EventType;
use crate::ids::TenantId;
use crate::store::{CompatStore, StoreResult};

#[async_trait]
impl CompatStore for RedisStore {
    async fn publish_compat(&self, tenant: &TenantId, event: EventType, message: &str) -> StoreResult<()> {
        // Channels are not keys: in a cluster, PUBLISH reaches subscribers on every node.
        let mut pipe = ::redis::pipe();
        for channel in self.keys.compat_channels(tenant, event) {
            pipe.publish(channel, message).ignore();
        }
        pipe.query_async::<()>(&mut self.conn().await?).await.map_err(unavailable)
    }
}
