//! Queued fan-out jobs' claims: each recipient is sent to once, whatever
//! the events queue redelivers.

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::TenantId;

/// One member's claim in a queued fan-out job ([`FanoutStore::fanout_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed by this attempt: send to it.
    Mine,
    /// Sent already (or the job finished): skip it.
    Sent,
    /// Another attempt holds its lease: it may still fail; try again later.
    Busy,
}

/// How queued fan-out jobs claim their recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimSettings {
    /// How long one attempt holds a claim before another may take it (an
    /// attempt killed mid-way gives its recipients back so).
    pub lease: std::time::Duration,
    /// How long a job's claims, and its finished marker, are kept: as long
    /// as the events queue may deliver the job again.
    pub ttl: std::time::Duration,
    /// Jobs of one tenant with claims at once.
    pub max_live_jobs: usize,
}

/// What an attempt of a queued fan-out job settles ([`FanoutStore::fanout_settle`]).
#[derive(Debug, Clone, Copy)]
pub enum Settled<'a> {
    /// Part way: these were sent, those are given back.
    Partly {
        /// Sent (or found gone): never again.
        sent: &'a [String],
        /// Not reached: the next attempt's.
        released: &'a [String],
    },
    /// The job is done.
    Finished,
}

/// Claims of queued fan-out jobs.
#[async_trait]
pub trait FanoutStore: Send + Sync {
    /// Claims `members` (connection ids, webhook ids) for one attempt of a
    /// queued fan-out job, each for `claims.lease`: [`Claim::Mine`] to
    /// send to, [`Claim::Sent`] for one sent already, [`Claim::Busy`] for
    /// one another attempt holds (it may yet fail: retry the job later).
    /// A finished job answers `Sent` for everyone. Claims live for
    /// `claims.ttl`; a tenant has at most `claims.max_live_jobs` jobs with
    /// claims at once (an error beyond: the job is retried later).
    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        job: &str,
        members: &[String],
        claims: &ClaimSettings,
    ) -> StoreResult<Vec<Claim>>;

    /// After an attempt's posts: `sent` are marked sent, `released` freed
    /// for the next attempt; or, `finished`, the job's claims are deleted
    /// and a marker answers its late duplicates "sent" until `claims.ttl`.
    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: Settled<'_>,
        claims: &ClaimSettings,
    ) -> StoreResult<()>;
}
