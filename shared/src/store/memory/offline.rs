use std::collections::VecDeque;
use std::time::Instant;

use async_trait::async_trait;

use super::{MemoryStore, Tenant};
use crate::config::Limits;
use crate::ids::{TenantId, UserId};
use crate::protocol::OfflineRefusal;
use crate::store::{OfflineStore, StoreResult};

/// One user's offline queue.
#[derive(Debug)]
pub(super) struct Queue {
    messages: VecDeque<String>,
    /// Their bytes together (the tenant's budget counts these).
    bytes: usize,
    expiry: Instant,
}

impl Tenant {
    /// [`OfflineStore::offline_push`] in this tenant.
    pub(super) fn offline_push(
        &mut self,
        limits: &Limits,
        user: &UserId,
        message: &str,
    ) -> Result<usize, OfflineRefusal> {
        let (cap, ttl) = (limits.offline_max_messages, limits.offline_ttl);
        let now = Instant::now();
        self.offline.retain(|_, q| q.expiry > now);
        if self.seen.get(user).is_none_or(|at| now.duration_since(*at) > ttl) {
            return Err(OfflineRefusal::UnknownUser);
        }
        if message.len() > limits.offline_max_bytes {
            return Err(OfflineRefusal::MessageTooLarge);
        }
        if !self.offline.contains_key(user) && self.offline.len() >= limits.offline_max_queues {
            return Err(OfflineRefusal::TenantQueuesFull);
        }
        let freed: usize = self
            .offline
            .get(user)
            .map_or(0, |q| q.messages.iter().take((q.messages.len() + 1).saturating_sub(cap)).map(String::len).sum());
        let total: usize = self.offline.values().map(|q| q.bytes).sum();
        if total + message.len() - freed > limits.offline_max_bytes {
            return Err(OfflineRefusal::TenantBytesFull);
        }
        let queue = self.offline.entry(user.clone()).or_insert_with(|| Queue {
            messages: VecDeque::new(),
            bytes: 0,
            expiry: now,
        });
        queue.messages.push_back(message.to_owned());
        queue.bytes += message.len();
        while queue.messages.len() > cap {
            queue.bytes -= queue.messages.pop_front().map_or(0, |m| m.len());
        }
        queue.expiry = now + ttl;
        Ok(queue.messages.len())
    }

    fn live_queue(&mut self, user: &UserId, now: Instant) -> Option<&mut Queue> {
        if self.offline.get(user).is_some_and(|q| q.expiry <= now) {
            self.offline.remove(user);
        }
        self.offline.get_mut(user)
    }
}

#[async_trait]
impl OfflineStore for MemoryStore {
    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>> {
        Ok(self.with(|state| state.entry(tenant.clone()).or_default().offline_push(&self.limits, user, message)))
    }

    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>> {
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else {
                return vec![];
            };
            t.live_queue(user, Instant::now())
                .map(|q| q.messages.iter().take(max).cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize> {
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else {
                return 0;
            };
            let Some(queue) = t.live_queue(user, Instant::now()) else {
                return 0;
            };
            let mut removed = 0;
            for message in delivered {
                if queue.messages.front() == Some(message) {
                    queue.messages.pop_front();
                    queue.bytes -= message.len();
                    removed += 1;
                }
            }
            if queue.messages.is_empty() {
                t.offline.remove(user);
            }
            removed
        }))
    }
}
