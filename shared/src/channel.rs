//! Channels: `<namespace>:<name>` inside a tenant (`queue:support`,
//! `call:1729866000.123`, `team:east`, `agent:42`, `chat:abc`), the
//! patterns that name several of them (`queue:*`, `team:e*`, `*`), and the
//! grants a token carries (its `channels` claim, a list of patterns).
//!
//! A channel is always inside the caller's tenant: the tenant comes from
//! the token and never from the channel's name, whose alphabet has no `:`
//! after the namespace, no braces and no `*`, so no name reaches into
//! another tenant's keys or reads as a pattern. What a role may do with a
//! namespace is `namespaces`' business; this module only names things.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most bytes of a namespace.
pub const NAMESPACE_MAX_LEN: usize = 32;
/// Most bytes of a channel's name (after the namespace and `:`).
pub const NAME_MAX_LEN: usize = 128;
/// Most entries of a token's `channels` claim.
pub const GRANTS_MAX: usize = 64;
/// Most bytes of a token's `channels` claim, its entries together: what
/// API Gateway's authorizer context (8 KB with the policy) has room for.
pub const GRANTS_MAX_BYTES: usize = 4096;

/// A channel name or pattern that does not parse; the message says what
/// was wrong and shows the shape expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChannel(pub String);

/// `[a-z][a-z0-9_-]*`, at most [`NAMESPACE_MAX_LEN`]: a namespace.
pub fn is_namespace(ns: &str) -> bool {
    ns.len() <= NAMESPACE_MAX_LEN
        && ns.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// A byte of a channel's name: what a user id may hold (so `agent:<user
/// id>` is always a channel) and `=`: letters, digits, `-`, `_`, `.`,
/// `@`, `+`, `=`.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+' | b'=')
}

fn check_name(raw: &str, name: &str) -> Result<(), InvalidChannel> {
    if name.is_empty() || name.len() > NAME_MAX_LEN {
        return Err(InvalidChannel(format!("channel '{raw}': the name after ':' must be 1 to {NAME_MAX_LEN} bytes")));
    }
    if let Some(bad) = name.bytes().find(|b| !name_byte(*b)) {
        let shown = if bad.is_ascii_graphic() { format!("'{}'", bad as char) } else { format!("0x{bad:02x}") };
        return Err(InvalidChannel(format!(
            "channel '{raw}': {shown} is not allowed in a name (letters, digits, '-', '_', '.', '@', '+' and '=')"
        )));
    }
    Ok(())
}

fn split(raw: &str) -> Result<(&str, &str), InvalidChannel> {
    let Some((ns, name)) = raw.split_once(':') else {
        return Err(InvalidChannel(format!(
            "channel '{raw}' has no namespace: expected <namespace>:<name>, e.g. queue:support"
        )));
    };
    if !is_namespace(ns) {
        return Err(InvalidChannel(format!(
            "channel '{raw}': the namespace must be 1 to {NAMESPACE_MAX_LEN} lowercase letters, digits, '-' or '_', starting with a letter"
        )));
    }
    Ok((ns, name))
}

/// One channel of a tenant: `<namespace>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(String);

impl Channel {
    /// Parses `<namespace>:<name>`; the error names what is wrong.
    pub fn parse(raw: &str) -> Result<Channel, InvalidChannel> {
        let (_, name) = split(raw)?;
        check_name(raw, name)?;
        Ok(Channel(raw.to_owned()))
    }

    /// The whole name, as stored in keys and sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `:`.
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }

    /// The part after `:`.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, name)| name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Channel {
    type Err = InvalidChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::parse(s)
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Channel::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Names one or several channels: `queue:support` (that one),
/// `queue:sup*` (a name prefix), `queue:*` (the whole namespace) or `*`
/// (every channel). What a token grants and a webhook filters on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelPattern(String);

impl ChannelPattern {
    /// Parses a pattern; the error names what is wrong.
    pub fn parse(raw: &str) -> Result<ChannelPattern, InvalidChannel> {
        if raw == "*" {
            return Ok(ChannelPattern(raw.to_owned()));
        }
        let (_, name) = split(raw)?;
        match name.strip_suffix('*') {
            Some("") => {}
            Some(prefix) => check_name(raw, prefix)?,
            None => check_name(raw, name)?,
        }
        Ok(ChannelPattern(raw.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does it name `channel`?
    pub fn matches(&self, channel: &Channel) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => channel.as_str().starts_with(prefix),
            None => self.0 == channel.as_str(),
        }
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ChannelPattern {
    type Err = InvalidChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelPattern::parse(s)
    }
}

impl Serialize for ChannelPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ChannelPattern::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The channels a token grants (its `channels` claim): what a namespace's
/// `granted` rule checks. At most [`GRANTS_MAX`] patterns, so it fits in
/// API Gateway's authorizer context beside the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Grants(Vec<ChannelPattern>);

impl Grants {
    /// Grants from a claim's entries; the error names the first bad one.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Grants, InvalidChannel> {
        let (mut patterns, mut bytes) = (Vec::new(), 0);
        for (i, raw) in entries.into_iter().enumerate() {
            bytes += raw.len() + 1;
            if i == GRANTS_MAX {
                return Err(InvalidChannel(format!("channels claim: at most {GRANTS_MAX} entries")));
            }
            if bytes > GRANTS_MAX_BYTES {
                return Err(InvalidChannel(format!("channels claim: at most {GRANTS_MAX_BYTES} bytes together")));
            }
            let p = ChannelPattern::parse(raw).map_err(|e| InvalidChannel(format!("channels claim: {e}")))?;
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        Ok(Grants(patterns))
    }

    /// Does any pattern name `channel`?
    pub fn allow(&self, channel: &Channel) -> bool {
        self.0.iter().any(|p| p.matches(channel))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[ChannelPattern] {
        &self.0
    }

    /// No grant at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The grants as one string, patterns separated by spaces (none holds
    /// one): how the authorizer's context carries them.
    pub fn to_context(&self) -> String {
        self.0.iter().map(ChannelPattern::as_str).collect::<Vec<_>>().join(" ")
    }

    /// [`Grants::to_context`]'s string read back.
    pub fn from_context(s: &str) -> Result<Grants, InvalidChannel> {
        Grants::parse(s.split(' ').filter(|p| !p.is_empty()))
    }
}

impl<'de> Deserialize<'de> for Grants {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        Grants::parse(raw.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_namespace_and_name() {
        for ok in ["queue:support", "call:1729866000.123", "team:east", "agent:42", "chat:abc", "agent:jane@x.com"] {
            let c = Channel::parse(ok).unwrap();
            assert_eq!(c.as_str(), ok);
            assert_eq!(format!("{}:{}", c.namespace(), c.name()), ok);
        }
        for (bad, says) in [
            ("support", "no namespace"),
            ("Queue:x", "namespace"),
            ("1q:x", "namespace"),
            (":x", "namespace"),
            ("queue:", "1 to 128"),
            ("queue:a:b", "':'"),
            ("queue:{t}", "'{'"),
            ("queue:a*", "'*'"),
            ("queue:a b", "0x20"),
        ] {
            let err = Channel::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
        assert!(Channel::parse(&format!("q:{}", "a".repeat(128))).is_ok());
        assert!(Channel::parse(&format!("q:{}", "a".repeat(129))).is_err());
        assert!(Channel::parse(&format!("{}:a", "q".repeat(33))).is_err());
    }

    #[test]
    fn patterns_name_one_a_prefix_a_namespace_or_all() {
        let c = |s: &str| Channel::parse(s).unwrap();
        let p = |s: &str| ChannelPattern::parse(s).unwrap();
        assert!(p("queue:support").matches(&c("queue:support")));
        assert!(!p("queue:support").matches(&c("queue:support2")));
        assert!(p("queue:sup*").matches(&c("queue:support2")));
        assert!(p("queue:*").matches(&c("queue:x")));
        assert!(!p("queue:*").matches(&c("queues:x")), "a namespace pattern stops at its ':'");
        assert!(p("*").matches(&c("agent:1")));
        for bad in ["queue", "queue:a*b", "*:x", "queue:**"] {
            assert!(ChannelPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_round_trip_through_the_authorizer_context() {
        let g = Grants::parse(["queue:support", "team:*", "queue:support"]).unwrap();
        assert_eq!(g.patterns().len(), 2, "duplicates collapse");
        assert_eq!(Grants::from_context(&g.to_context()).unwrap(), g);
        assert_eq!(Grants::from_context("").unwrap(), Grants::default());
        assert!(g.allow(&Channel::parse("team:east").unwrap()));
        assert!(!g.allow(&Channel::parse("queue:sales").unwrap()));
        let too_many: Vec<String> = (0..=GRANTS_MAX).map(|i| format!("q:{i}")).collect();
        let err = Grants::parse(too_many.iter().map(String::as_str)).unwrap_err();
        assert!(err.to_string().contains("at most 64"), "{err}");
        let err = serde_json::from_str::<Grants>(r#"["queue:ok", "bad"]"#).unwrap_err();
        assert!(err.to_string().contains("channels claim: channel 'bad'"), "{err}");
    }
}
