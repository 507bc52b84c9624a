//! Offline queues: what a user who was not connected gets on `sync`.

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::{TenantId, UserId};
use crate::protocol::OfflineRefusal;

impl OfflineRefusal {
    /// The caller could have avoided it (a budget it filled, a message too
    /// big): a synchronous publish is refused whole (429 / 413) rather than
    /// half done. An unknown user is not an error: the rest of the fan-out
    /// (webhooks) goes on and the report says why nothing was queued.
    pub fn is_callers_fault(self) -> bool {
        !matches!(self, OfflineRefusal::UnknownUser)
    }

    /// What the reply says.
    pub fn describe(self, limits: &crate::config::Limits) -> String {
        match self {
            OfflineRefusal::UnknownUser => "the user has not connected within the offline TTL".into(),
            OfflineRefusal::TenantQueuesFull => format!(
                "the tenant's {} offline queues are all in use (OFFLINE_MAX_QUEUES_PER_TENANT); retry once users have synced",
                limits.offline_max_queues
            ),
            OfflineRefusal::TenantBytesFull => format!(
                "the tenant's offline queues hold their {} bytes (OFFLINE_MAX_BYTES_PER_TENANT); retry once users have synced",
                limits.offline_max_bytes
            ),
            OfflineRefusal::MessageTooLarge => format!(
                "the event is bigger than the tenant's whole offline budget of {} bytes (OFFLINE_MAX_BYTES_PER_TENANT)",
                limits.offline_max_bytes
            ),
        }
    }
}

/// Per-user offline queues, bounded per tenant.
#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Appends a message to a user's offline queue (dropping the oldest
    /// beyond the cap, renewing the TTL). Returns the queue length, or why
    /// it was refused: only a user registered within the offline TTL gets
    /// a queue, and the tenant's queues together stay within
    /// `offline_max_queues` and `offline_max_bytes` (the cap's drops and
    /// acknowledged or expired messages give their bytes back).
    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>>;

    /// Up to `max` queued messages, oldest first, without removing them.
    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>>;

    /// Removes messages that were delivered: those of `delivered` still at
    /// the head of the queue, in order. Messages queued since the peek stay.
    /// Returns how many were removed.
    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize>;
}
