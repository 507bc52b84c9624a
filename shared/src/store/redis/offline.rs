use std::sync::LazyLock;

use ::redis::Script;
use async_trait::async_trait;

use super::{NOW_FN, OFFLINE_PUSH_FN, RELEASE_FN, RedisStore, corrupt, unavailable};
use crate::ids::{TenantId, UserId};
use crate::protocol::OfflineRefusal;
use crate::store::{OfflineStore, StoreResult};

/// A script in `lua/offline_push.lua`, which opens with its KEYS/ARGV contract.
static OFFLINE_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{NOW_FN}\n{RELEASE_FN}\n{OFFLINE_PUSH_FN}\n{}", include_str!("../lua/offline_push.lua")))
});

/// A script in `lua/offline_ack.lua`, which opens with its KEYS/ARGV contract.
static OFFLINE_ACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{RELEASE_FN}\n{}", include_str!("../lua/offline_ack.lua"))));

/// `offline_push`'s answer: the queue's length, or why it refused.
pub(super) fn offline_answer(answer: i64) -> StoreResult<Result<usize, OfflineRefusal>> {
    Ok(match answer {
        -1 => Err(OfflineRefusal::UnknownUser),
        -2 => Err(OfflineRefusal::TenantQueuesFull),
        -3 => Err(OfflineRefusal::TenantBytesFull),
        -4 => Err(OfflineRefusal::MessageTooLarge),
        n => Ok(usize::try_from(n).map_err(|_| corrupt("offline queue length"))?),
    })
}

#[async_trait]
impl OfflineStore for RedisStore {
    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>> {
        let (keys, bounds) = self.offline_args(tenant, user);
        let answer: i64 = OFFLINE_PUSH
            .key(&keys)
            .arg(user.as_str())
            .arg(message)
            .arg(&bounds)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        offline_answer(answer)
    }

    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>> {
        if max == 0 {
            return Ok(vec![]);
        }
        ::redis::cmd("LRANGE")
            .arg(self.keys.offline(tenant, user))
            .arg(0)
            .arg(max as i64 - 1)
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }

    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize> {
        if delivered.is_empty() {
            return Ok(0);
        }
        let k = &self.keys;
        let mut inv = OFFLINE_ACK.key(k.offline(tenant, user));
        inv.key(k.offline_index(tenant)).key(k.offline_bytes(tenant)).key(k.offline_total(tenant)).arg(user.as_str());
        for m in delivered {
            inv.arg(m.as_str());
        }
        inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)
    }
}
