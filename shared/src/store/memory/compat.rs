use async_trait::async_trait;

use super::MemoryStore;
use crate::event::EventType;
use crate::ids::TenantId;
use crate::store::{CompatStore, StoreResult};

#[async_trait]
impl CompatStore for MemoryStore {
    async fn publish_compat(&self, _tenant: &TenantId, _event: EventType, _message: &str) -> StoreResult<()> {
        // Nobody can SUBSCRIBE to an in-process store.
        Ok(())
    }
}
