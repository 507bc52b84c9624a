//! Channel namespaces and their permissions, as data.
//!
//! One JSON value (`CHANNEL_NAMESPACES`: the template's parameter, the
//! emulator's `--channels` flag or file) declares every namespace a
//! tenant's channels may use, and for each, per action and per role, what
//! that role may do:
//!
//! ```json
//! {
//!   "queue": {"subscribe": {"agent": "granted", "supervisor": "any", "admin": "any", "service": "any"},
//!             "publish":   {"admin": "any", "service": "any"}},
//!   "agent": {"subscribe": {"agent": "own", "supervisor": "any", "admin": "any", "service": "any"},
//!             "publish":   {"admin": "any", "service": "any"}},
//!   "call":  {"subscribe": {"agent": "granted", "supervisor": "any"}, "publish": {"service": "any"},
//!             "ephemeral": true}
//! }
//! ```
//!
//! A rule is `any` (every channel of the namespace), `own` (only
//! `<namespace>:<the caller's user id>`), `granted` (only channels the
//! token's `channels` claim names) or `own_or_granted`; a role a rule does
//! not list may not. `history` (default true) keeps the namespace's events
//! for recovery; `ephemeral` (one channel per call or chat) lets a
//! channel's position expire with its history instead of a day later.
//!
//! The value is validated at cold start; each error names the namespace
//! and the field. [`Namespaces::default`] is the call center's set
//! (`queue`, `call`, `team`, `agent`, `chat`), what runs when nothing is
//! configured. Event types are judged as before ([`crate::ids::Role`]'s
//! publish rule: clients publish chat events only); a namespace says who
//! may use which channels.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, is_namespace};
use crate::ids::{Identity, Role};

/// What a role may do in a namespace, for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Every channel of the namespace.
    Any,
    /// Only the channel named after the caller: `agent:<own user id>`.
    Own,
    /// Only channels the token's `channels` claim names.
    Granted,
    /// Its own channel, and those the token names.
    OwnOrGranted,
}

impl Rule {
    fn as_str(self) -> &'static str {
        match self {
            Rule::Any => "any",
            Rule::Own => "own",
            Rule::Granted => "granted",
            Rule::OwnOrGranted => "own_or_granted",
        }
    }

    fn admits(self, who: &Identity, channel: &Channel) -> bool {
        let own = channel.name() == who.user_id.as_str();
        let granted = || who.channels.allow(channel);
        match self {
            Rule::Any => true,
            Rule::Own => own,
            Rule::Granted => granted(),
            Rule::OwnOrGranted => own || granted(),
        }
    }
}

/// The two things one does with a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Receive its events (and read its history).
    Subscribe,
    /// Send events to it.
    Publish,
}

impl Action {
    /// `subscribe` or `publish`: the field of a namespace's rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Publish => "publish",
        }
    }
}

/// One namespace's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// Who may subscribe, by role.
    #[serde(default)]
    pub subscribe: BTreeMap<Role, Rule>,
    /// Who may publish, by role.
    #[serde(default)]
    pub publish: BTreeMap<Role, Rule>,
    /// Keep the namespace's events for recovery (default true).
    #[serde(default = "yes")]
    pub history: bool,
    /// One channel per call or chat: a channel's position expires with its
    /// history (`CHANNEL_HISTORY_TTL_SECS`) rather than a day after its
    /// last event.
    #[serde(default)]
    pub ephemeral: bool,
}

fn yes() -> bool {
    true
}

impl Namespace {
    fn rules(&self, action: Action) -> &BTreeMap<Role, Rule> {
        match action {
            Action::Subscribe => &self.subscribe,
            Action::Publish => &self.publish,
        }
    }
}

/// Why a caller may not use a channel: names the channel and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The namespace is not declared.
    #[error("channel {channel}: namespace '{namespace}' is not declared (declared: {declared})")]
    UnknownNamespace {
        /// The channel asked for.
        channel: String,
        /// Its namespace.
        namespace: String,
        /// The declared ones, comma-separated.
        declared: String,
    },
    /// The role has no rule for the action in this namespace.
    #[error(
        "channel {channel}: the {role} role may not {action} in namespace '{namespace}' (no {namespace}.{action}.{role} rule)"
    )]
    RoleNotAllowed {
        /// The channel asked for.
        channel: String,
        /// Its namespace.
        namespace: String,
        /// The caller's role.
        role: &'static str,
        /// subscribe or publish.
        action: &'static str,
    },
    /// The role's rule does not admit this channel for this caller.
    #[error("channel {channel}: rule {namespace}.{action}.{role} = {rule}: {why}")]
    NotAdmitted {
        /// The channel asked for.
        channel: String,
        /// Its namespace.
        namespace: String,
        /// The caller's role.
        role: &'static str,
        /// subscribe or publish.
        action: &'static str,
        /// The rule.
        rule: &'static str,
        /// What the rule needed.
        why: String,
    },
}

impl Refusal {
    /// The rule that refused, as `namespace.action.role` (for logs and metrics).
    pub fn rule(&self) -> String {
        match self {
            Refusal::UnknownNamespace { namespace, .. } => format!("{namespace} (undeclared)"),
            Refusal::RoleNotAllowed { namespace, role, action, .. }
            | Refusal::NotAdmitted { namespace, role, action, .. } => format!("{namespace}.{action}.{role}"),
        }
    }
}

/// Every declared namespace. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces(Arc<BTreeMap<String, Namespace>>);

/// A namespaces value that is not valid: the message names the namespace
/// and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidNamespaces(pub String);

impl Namespaces {
    /// Reads the JSON value (an object of namespace → rules).
    pub fn parse(json: &str) -> Result<Namespaces, InvalidNamespaces> {
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| InvalidNamespaces(format!("is not a JSON object of namespace -> rules ({e})")))?;
        let mut out = BTreeMap::new();
        for (name, rules) in raw {
            if !is_namespace(&name) {
                return Err(InvalidNamespaces(format!(
                    "namespace '{name}': a name is 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter"
                )));
            }
            let ns =
                Namespace::deserialize(&rules).map_err(|e| InvalidNamespaces(format!("namespace '{name}': {e}")))?;
            out.insert(name, ns);
        }
        if out.is_empty() {
            return Err(InvalidNamespaces("declares no namespace; leave it unset for the defaults".into()));
        }
        Ok(Namespaces(Arc::new(out)))
    }

    /// The namespace's rules, when declared.
    pub fn get(&self, namespace: &str) -> Option<&Namespace> {
        self.0.get(namespace)
    }

    /// The declared namespaces' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// May `who` do `action` on `channel` (always inside `who`'s tenant)?
    pub fn check(&self, who: &Identity, action: Action, channel: &Channel) -> Result<&Namespace, Refusal> {
        let namespace = channel.namespace();
        let Some(ns) = self.get(namespace) else {
            return Err(Refusal::UnknownNamespace {
                channel: channel.to_string(),
                namespace: namespace.to_owned(),
                declared: self.names().collect::<Vec<_>>().join(", "),
            });
        };
        let role = who.role.as_str();
        let Some(rule) = ns.rules(action).get(&who.role) else {
            return Err(Refusal::RoleNotAllowed {
                channel: channel.to_string(),
                namespace: namespace.to_owned(),
                role,
                action: action.as_str(),
            });
        };
        if rule.admits(who, channel) {
            return Ok(ns);
        }
        let grants = if who.channels.is_empty() {
            "the token grants no channel".to_owned()
        } else {
            let listed: Vec<&str> = who.channels.patterns().iter().map(|p| p.as_str()).collect();
            format!("the token grants {}", listed.join(", "))
        };
        let why = match rule {
            Rule::Own => format!("only {namespace}:{} (your own)", who.user_id),
            Rule::Granted => format!("only channels the token's channels claim names; {grants}"),
            Rule::OwnOrGranted => {
                format!("only {namespace}:{} (your own) or channels the token names; {grants}", who.user_id)
            }
            Rule::Any => unreachable!("any admits every channel"),
        };
        Err(Refusal::NotAdmitted {
            channel: channel.to_string(),
            namespace: namespace.to_owned(),
            role,
            action: action.as_str(),
            rule: rule.as_str(),
            why,
        })
    }

    /// The value as JSON (what `--print-channels` shows and the docs quote).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&*self.0).expect("plain data")
    }
}

/// The call center's namespaces, what runs unless configured otherwise:
///
/// | namespace | subscribe | publish | |
/// | --- | --- | --- | --- |
/// | `queue` | agent: granted; supervisor, admin, service: any | admin, service | a queue's calls and stats |
/// | `team` | agent: granted; supervisor, admin, service: any | admin, service | a team's agents |
/// | `agent` | agent: own; supervisor, admin, service: any | admin, service | one agent's offers and state |
/// | `call` | agent: granted; supervisor, admin, service: any | admin, service | one call (ephemeral) |
/// | `chat` | agent: granted; supervisor, admin, service: any | agent, supervisor: granted; admin, service: any | one chat session (ephemeral) |
pub const DEFAULT_NAMESPACES: &str = r#"{
  "queue": {
    "subscribe": {"agent": "granted", "supervisor": "any", "admin": "any", "service": "any"},
    "publish": {"admin": "any", "service": "any"}
  },
  "team": {
    "subscribe": {"agent": "granted", "supervisor": "any", "admin": "any", "service": "any"},
    "publish": {"admin": "any", "service": "any"}
  },
  "agent": {
    "subscribe": {"agent": "own", "supervisor": "any", "admin": "any", "service": "any"},
    "publish": {"admin": "any", "service": "any"}
  },
  "call": {
    "subscribe": {"agent": "granted", "supervisor": "any", "admin": "any", "service": "any"},
    "publish": {"admin": "any", "service": "any"},
    "ephemeral": true
  },
  "chat": {
    "subscribe": {"agent": "granted", "supervisor": "any", "admin": "any", "service": "any"},
    "publish": {"agent": "granted", "supervisor": "granted", "admin": "any", "service": "any"},
    "ephemeral": true
  }
}"#;

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::parse(DEFAULT_NAMESPACES).expect("the defaults are valid")
    }
}

impl fmt::Display for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Grants;

    fn who(role: Role, user: &str, grants: &[&str]) -> Identity {
        Identity {
            channels: Grants::parse(grants.iter().copied()).unwrap(),
            ..Identity::new("acme".parse().unwrap(), user.parse().unwrap(), role)
        }
    }

    fn ch(s: &str) -> Channel {
        Channel::parse(s).unwrap()
    }

    #[test]
    fn the_defaults_model_a_call_center() {
        let ns = Namespaces::default();
        assert_eq!(ns.to_string(), "agent, call, chat, queue, team");
        let agent = who(Role::Agent, "42", &["queue:support", "chat:*"]);
        let sub = |w: &Identity, c: &str| ns.check(w, Action::Subscribe, &ch(c)).map(|_| ());
        assert!(sub(&agent, "agent:42").is_ok());
        assert!(sub(&agent, "queue:support").is_ok());
        assert!(sub(&agent, "chat:abc").is_ok());
        let other = sub(&agent, "agent:43").unwrap_err().to_string();
        assert_eq!(other, "channel agent:43: rule agent.subscribe.agent = own: only agent:42 (your own)");
        let sales = sub(&agent, "queue:sales").unwrap_err().to_string();
        assert!(
            sales.contains("rule queue.subscribe.agent = granted")
                && sales.contains("the token grants queue:support, chat:*"),
            "{sales}"
        );
        let supervisor = who(Role::Supervisor, "7", &[]);
        assert!(sub(&supervisor, "agent:43").is_ok() && sub(&supervisor, "queue:sales").is_ok());
        let publish = ns.check(&agent, Action::Publish, &ch("queue:support")).unwrap_err();
        assert_eq!(publish.rule(), "queue.publish.agent");
        assert!(publish.to_string().contains("no queue.publish.agent rule"), "{publish}");
        assert!(ns.check(&agent, Action::Publish, &ch("chat:abc")).is_ok());
        let undeclared = sub(&agent, "fleet:x").unwrap_err().to_string();
        assert!(undeclared.contains("namespace 'fleet' is not declared (declared: agent, call"), "{undeclared}");
        assert!(ns.get("call").unwrap().ephemeral && !ns.get("queue").unwrap().ephemeral);
        assert!(ns.get("queue").unwrap().history);
    }

    #[test]
    fn errors_name_the_namespace_and_field() {
        let cases = [
            ("[]", "is not a JSON object"),
            ("{}", "declares no namespace"),
            (r#"{"Queue": {}}"#, "namespace 'Queue'"),
            (r#"{"queue": {"subscibe": {}}}"#, "namespace 'queue': unknown field `subscibe`"),
            (r#"{"queue": {"subscribe": {"root": "any"}}}"#, "namespace 'queue': unknown variant `root`"),
            (r#"{"queue": {"publish": {"agent": "some"}}}"#, "namespace 'queue': unknown variant `some`"),
            (r#"{"queue": {"history": "yes"}}"#, "namespace 'queue': invalid type"),
        ];
        for (json, says) in cases {
            let err = Namespaces::parse(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        let ok = Namespaces::parse(r#"{"fleet": {"subscribe": {"agent": "own_or_granted"}}}"#).unwrap();
        let truck = who(Role::Agent, "t1", &["fleet:depot"]);
        assert!(ok.check(&truck, Action::Subscribe, &ch("fleet:t1")).is_ok());
        assert!(ok.check(&truck, Action::Subscribe, &ch("fleet:depot")).is_ok());
        assert!(ok.check(&truck, Action::Subscribe, &ch("fleet:t2")).is_err());
        assert!(ok.check(&truck, Action::Publish, &ch("fleet:t1")).is_err(), "no publish rule: nobody");
        assert_eq!(Namespaces::parse(&ok.to_json()).unwrap(), ok);
    }
}
