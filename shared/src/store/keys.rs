//! Redis key names. The one place the layout is spelled out in code.
//!
//! The tenant is always wrapped in `{}`: Redis Cluster hashes only the part
//! inside the first braces, so all keys of one tenant land in one slot and a
//! Lua script may touch any of them. `TenantId` cannot contain braces or
//! colons, so no tenant can reach into another's slot or keys.

use crate::channel::Channel;
use crate::event::Topic;
use crate::ids::{ConnectionId, TenantId, UserId};

/// Builds keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (validated by `Config`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys { prefix: prefix.into() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}:<kind>:{tenant}:` — the stem of per-id keys, also handed to Lua
    /// scripts that build keys for ids they read from Redis.
    pub fn stem(&self, kind: &str, tenant: &TenantId) -> String {
        format!("{}:{kind}:{{{tenant}}}:", self.prefix)
    }

    /// `{p}:conn:{t}:<conn>` HASH.
    pub fn conn(&self, tenant: &TenantId, conn: &ConnectionId) -> String {
        self.stem("conn", tenant) + conn.as_str()
    }

    /// `{p}:connsubs:{t}:<conn>` SET of topics.
    pub fn conn_subs(&self, tenant: &TenantId, conn: &ConnectionId) -> String {
        self.stem("connsubs", tenant) + conn.as_str()
    }

    /// `{p}:conns:{t}` SET of connection ids.
    pub fn conns(&self, tenant: &TenantId) -> String {
        format!("{}:conns:{{{tenant}}}", self.prefix)
    }

    /// `{p}:active:{t}` ZSET connection id → last frame from the client (ms).
    pub fn active(&self, tenant: &TenantId) -> String {
        format!("{}:active:{{{tenant}}}", self.prefix)
    }

    /// `{p}:connidx:{t}` HASH: connection id → `<user_id> <endpoint>`, what
    /// a fan-out needs of each recipient, read with one HMGET.
    pub fn conn_index(&self, tenant: &TenantId) -> String {
        format!("{}:connidx:{{{tenant}}}", self.prefix)
    }

    /// `{p}:user:{t}:<user>` SET of connection ids.
    pub fn user(&self, tenant: &TenantId, user: &UserId) -> String {
        self.stem("user", tenant) + user.as_str()
    }

    /// `{p}:online:{t}` SET of user ids.
    pub fn online(&self, tenant: &TenantId) -> String {
        format!("{}:online:{{{tenant}}}", self.prefix)
    }

    /// `{p}:presence:{t}:<user>` STRING with TTL.
    pub fn presence(&self, tenant: &TenantId, user: &UserId) -> String {
        self.stem("presence", tenant) + user.as_str()
    }

    /// `{p}:subs:{t}:<topic>` SET of connection ids.
    pub fn subs(&self, tenant: &TenantId, topic: &Topic) -> String {
        self.stem("subs", tenant) + topic.as_str()
    }

    /// `{p}:ch:{t}:<channel>` HASH connection id → its filter (topics
    /// separated by spaces): the channel's subscribers.
    pub fn channel_subs(&self, tenant: &TenantId, channel: &Channel) -> String {
        self.stem("ch", tenant) + channel.as_str()
    }

    /// `{p}:connch:{t}:<conn>` HASH channel → filter: a connection's channels.
    pub fn conn_channels(&self, tenant: &TenantId, conn: &ConnectionId) -> String {
        self.stem("connch", tenant) + conn.as_str()
    }

    /// `{p}:chist:{t}:<channel>` STREAM of a channel's recent events, ids `<offset>-0`.
    pub fn channel_history(&self, tenant: &TenantId, channel: &Channel) -> String {
        self.stem("chist", tenant) + channel.as_str()
    }

    /// `{p}:chmeta:{t}:<channel>` HASH: a channel's epoch and top offset.
    pub fn channel_meta(&self, tenant: &TenantId, channel: &Channel) -> String {
        self.stem("chmeta", tenant) + channel.as_str()
    }

    /// `{p}:chbytes:{t}` HASH channel → bytes its history keeps, and `total`.
    pub fn channel_bytes(&self, tenant: &TenantId) -> String {
        format!("{}:chbytes:{{{tenant}}}", self.prefix)
    }

    /// `{p}:chexp:{t}` ZSET channel → when its history expires (ms).
    pub fn channel_expiry(&self, tenant: &TenantId) -> String {
        format!("{}:chexp:{{{tenant}}}", self.prefix)
    }

    /// `{p}:offline:{t}:<user>` LIST.
    pub fn offline(&self, tenant: &TenantId, user: &UserId) -> String {
        self.stem("offline", tenant) + user.as_str()
    }

    /// `{p}:seen:{t}` ZSET user id → last `$connect` (ms): who may have an offline queue.
    pub fn seen(&self, tenant: &TenantId) -> String {
        format!("{}:seen:{{{tenant}}}", self.prefix)
    }

    /// `{p}:offline_idx:{t}` ZSET user id → expiry (ms) of their offline list.
    pub fn offline_index(&self, tenant: &TenantId) -> String {
        format!("{}:offline_idx:{{{tenant}}}", self.prefix)
    }

    /// `{p}:offline_bytes:{t}` HASH user id → bytes queued for them.
    pub fn offline_bytes(&self, tenant: &TenantId) -> String {
        format!("{}:offline_bytes:{{{tenant}}}", self.prefix)
    }

    /// `{p}:offline_total:{t}` STRING: bytes queued for the whole tenant.
    pub fn offline_total(&self, tenant: &TenantId) -> String {
        format!("{}:offline_total:{{{tenant}}}", self.prefix)
    }

    /// `{p}:ratelimit:{t}:<second>` counter of one one-second window.
    pub fn rate_limit(&self, tenant: &TenantId, second: i64) -> String {
        self.stem("ratelimit", tenant) + &second.to_string()
    }

    /// The legacy hub's pub/sub channels for an event of this tenant: `{p}:events`,
    /// plus `{p}:agents:<t>`, `{p}:calls:<t>` or `{p}:queues:<t>` by family.
    pub fn compat_channels(&self, tenant: &TenantId, event: crate::event::EventType) -> Vec<String> {
        let mut channels = vec![format!("{}:events", self.prefix)];
        let family = match event.category() {
            "agent" => Some("agents"),
            "call" => Some("calls"),
            "queue" => Some("queues"),
            _ => None,
        };
        if let Some(family) = family {
            channels.push(format!("{}:{family}:{tenant}", self.prefix));
        }
        channels
    }

    /// `{p}:webhooks:{t}` HASH id -> configuration JSON.
    pub fn webhooks(&self, tenant: &TenantId) -> String {
        format!("{}:webhooks:{{{tenant}}}", self.prefix)
    }

    /// `{p}:webhook_log:{t}` STREAM of delivery attempts.
    pub fn webhook_log(&self, tenant: &TenantId) -> String {
        format!("{}:webhook_log:{{{tenant}}}", self.prefix)
    }

    /// `{p}:webhook_health:{t}:<id>` HASH (circuit breaker).
    pub fn webhook_health(&self, tenant: &TenantId, id: &str) -> String {
        self.stem("webhook_health", tenant) + id
    }

    /// `{p}:webhook_stats:{t}:<id>:<bucket>` HASH of one stats bucket's counters.
    pub fn webhook_stats(&self, tenant: &TenantId, id: &str, bucket: i64) -> String {
        format!("{}{id}:{bucket}", self.stem("webhook_stats", tenant))
    }

    /// `{p}:sent:{t}:<job>` HASH of the recipients a queued fan-out job
    /// claimed (member -> lease expiry ms, 0 once sent); `<job>` is the
    /// event's id, with `:<chunk job id>` for a chunk job.
    pub fn sent(&self, tenant: &TenantId, job: &str) -> String {
        self.stem("sent", tenant) + job
    }

    /// `{p}:sentdone:{t}:<job>` STRING: the job finished (its claims are gone).
    pub fn sent_done(&self, tenant: &TenantId, job: &str) -> String {
        self.stem("sentdone", tenant) + job
    }

    /// `{p}:fanouts:{t}` ZSET of the tenant's live claim hashes, by expiry: their bound.
    pub fn fanouts(&self, tenant: &TenantId) -> String {
        self.stem("fanouts", tenant)
    }

    /// `{p}:history:{t}` STREAM of the tenant's recent events, ids `<offset>-0`.
    pub fn history(&self, tenant: &TenantId) -> String {
        format!("{}:history:{{{tenant}}}", self.prefix)
    }

    /// `{p}:history_meta:{t}` HASH: the history's epoch and top offset.
    pub fn history_meta(&self, tenant: &TenantId) -> String {
        format!("{}:history_meta:{{{tenant}}}", self.prefix)
    }

    /// `{p}:hidx:{t}:` the stem of the history's indexes, which go on
    /// `<epoch>:t:<type>`, `<epoch>:a:<type>` and `<epoch>:u:<user>`.
    pub fn history_index_stem(&self, tenant: &TenantId) -> String {
        self.stem("hidx", tenant)
    }

    /// `{p}:recorded:{t}:<event_id>` STRING: the offset a queued event was recorded at (once per event).
    pub fn recorded(&self, tenant: &TenantId, event_id: &str) -> String {
        self.stem("recorded", tenant) + event_id
    }

    /// `{p}:tenants` SET (not per tenant: lives in its own slot).
    pub fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let k = Keys::new("callcenter");
        let t: TenantId = "t1".parse().unwrap();
        let u: UserId = "42".parse().unwrap();
        let c: ConnectionId = "abc=".parse().unwrap();
        assert_eq!(k.conn(&t, &c), "callcenter:conn:{t1}:abc=");
        assert_eq!(k.conns(&t), "callcenter:conns:{t1}");
        assert_eq!(k.user(&t, &u), "callcenter:user:{t1}:42");
        assert_eq!(k.online(&t), "callcenter:online:{t1}");
        assert_eq!(k.presence(&t, &u), "callcenter:presence:{t1}:42");
        assert_eq!(k.subs(&t, &"call.*".parse().unwrap()), "callcenter:subs:{t1}:call.*");
        assert_eq!(k.offline(&t, &u), "callcenter:offline:{t1}:42");
        let ch = Channel::parse("queue:support").unwrap();
        assert_eq!(k.channel_subs(&t, &ch), "callcenter:ch:{t1}:queue:support");
        assert_eq!(k.channel_history(&t, &ch), "callcenter:chist:{t1}:queue:support");
    }
}
