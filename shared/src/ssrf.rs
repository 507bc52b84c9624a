//! The SSRF guard for webhook URLs.
//!
//! A tenant chooses where its webhooks go, so a URL is an attacker's chance
//! to make us call into our own network (the cloud metadata service at
//! 169.254.169.254, Redis, internal APIs). Three layers:
//!
//! 1. [`check_url`] on save and before each delivery: scheme (`https` only
//!    unless plain http is allowed), a host, no credentials in the URL, and
//!    an IP literal must be a public address.
//! 2. [`VettedResolver`], reqwest's DNS resolver for deliveries: a host name
//!    is resolved and only public addresses are handed to the connector, so
//!    a name that resolves to 127.0.0.1 (or is re-pointed there later, DNS
//!    rebinding) is refused at connection time.
//! 3. [`delivery_client`] follows no redirects: a 30x to an internal address
//!    is not taken.
//!
//! [`UrlPolicy::allow_private`] lets loopback and private ranges through for
//! local development (the emulator turns it on); link-local (the metadata
//! service), multicast and unspecified addresses stay refused even then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// What URLs deliveries may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Refuse `http://` (production).
    pub require_https: bool,
    /// Allow loopback and private ranges (local development only).
    pub allow_private: bool,
}

impl UrlPolicy {
    /// Production: https to public addresses only.
    pub const PRODUCTION: UrlPolicy = UrlPolicy { require_https: true, allow_private: false };
    /// Local development: http allowed, loopback and private ranges allowed.
    pub const LOCAL: UrlPolicy = UrlPolicy { require_https: false, allow_private: true };
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("not a valid URL: {0}")]
    Malformed(String),
    /// Not https (or http where allowed).
    #[error("scheme '{0}' is not allowed; use https")]
    Scheme(String),
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// `user:password@` in the URL.
    #[error("credentials in the URL are not allowed; use the webhook secret")]
    Credentials,
    /// The address is internal.
    #[error("address {0} is not a public address")]
    Forbidden(IpAddr),
    /// A control character or whitespace in the URL (a URL parser drops
    /// tabs and newlines silently: what is stored would not be what was sent).
    #[error("the URL contains {0}; send it without whitespace or control characters")]
    Control(String),
    /// A name that means this machine (`localhost`, `*.localhost`).
    #[error("host '{0}' is this machine, not a public address")]
    Local(String),
    /// The name resolves to an internal address.
    #[error("host '{0}' resolves to {1}, which is not a public address")]
    ResolvesInternal(String, IpAddr),
    /// The name resolves to no allowed address.
    #[error("host '{0}' does not resolve to a public address")]
    Unresolvable(String),
}

/// Is this address off limits under `allow_private`?
pub fn is_forbidden(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_private),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and
            // NAT64 (64:ff9b::a.b.c.d) forms reach the embedded IPv4 address.
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4, allow_private);
            }
            let s = v6.segments();
            let private = v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00; // ::1, unique local fc00::/7
            let always = v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254); // EC2 metadata (IMDS over IPv6)
            always || (private && !allow_private)
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some(tail());
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail());
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail());
    }
    None
}

fn forbidden_v4(ip: Ipv4Addr, allow_private: bool) -> bool {
    let o = ip.octets();
    let private = ip.is_loopback() || ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64); // + CGNAT 100.64/10
    let always = ip.is_unspecified()
        || ip.is_link_local() // 169.254/16: the metadata service
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0 // "this network"
        || o[0] >= 240 // reserved
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || ip.is_documentation();
    always || (private && !allow_private)
}

/// A webhook URL as anyone but the tenant's admins may see it, and as logs
/// keep it: scheme, host and port only. For Slack-style webhooks the path
/// is the credential (`/services/T…/B…/<secret>`), and a query may hold a
/// token. `https://hooks.slack.com/…`.
pub fn redacted(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if url.path() == "/" && url.query().is_none() { "/" } else { "/…" };
            format!("{}://{host}{port}{rest}", url.scheme())
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// Validates a webhook URL (without resolving it).
pub fn check_url(raw: &str, policy: UrlPolicy) -> Result<Url, UrlError> {
    if let Some(bad) = raw.chars().find(|c| c.is_control() || c.is_whitespace()) {
        let shown = match bad {
            '\n' => "a newline".to_owned(),
            '\t' => "a tab".to_owned(),
            ' ' => "a space".to_owned(),
            other => format!("U+{:04X}", u32::from(other)),
        };
        return Err(UrlError::Control(shown));
    }
    let url = Url::parse(raw).map_err(|e| UrlError::Malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if !policy.require_https => {}
        other => return Err(UrlError::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let ip = match url.host() {
        None => return Err(UrlError::NoHost),
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(Host::Domain("")) => return Err(UrlError::NoHost),
        Some(Host::Domain(name)) => {
            let bare = name.trim_end_matches('.').to_ascii_lowercase();
            if !policy.allow_private && (bare == "localhost" || bare.ends_with(".localhost")) {
                return Err(UrlError::Local(name.to_owned()));
            }
            None
        }
    };
    if let Some(ip) = ip.filter(|ip| is_forbidden(*ip, policy.allow_private)) {
        return Err(UrlError::Forbidden(ip));
    }
    Ok(url)
}

/// [`check_url`], then, where private addresses are refused, the name is
/// resolved and refused when any address is internal: what a webhook is
/// saved with. Delivery checks again through [`VettedResolver`] (DNS can
/// change after the save). A name that does not resolve now is accepted:
/// it may be created later, and delivery will refuse it if it is internal.
pub async fn check_url_at_save(raw: &str, policy: UrlPolicy) -> Result<Url, UrlError> {
    let url = check_url(raw, policy)?;
    if let (false, Some(Host::Domain(name))) = (policy.allow_private, url.host()) {
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((name, port))).await;
        if let Ok(Ok(addrs)) = lookup {
            vet_resolved(name, addrs.map(|a| a.ip()))?;
        }
    }
    Ok(url)
}

/// Refuses `name` when any address it resolved to is internal.
fn vet_resolved(name: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Result<(), UrlError> {
    match addrs.into_iter().find(|ip| is_forbidden(*ip, false)) {
        Some(ip) => Err(UrlError::ResolvesInternal(name.to_owned(), ip)),
        None => Ok(()),
    }
}

/// reqwest's DNS resolver for deliveries: only allowed addresses come out.
#[derive(Debug, Clone, Copy)]
pub struct VettedResolver {
    allow_private: bool,
}

impl VettedResolver {
    /// A resolver applying `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        VettedResolver { allow_private }
    }
}

impl reqwest::dns::Resolve for VettedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let vetted: Vec<SocketAddr> = all.into_iter().filter(|a| !is_forbidden(a.ip(), allow_private)).collect();
            if vetted.is_empty() {
                return Err(Box::new(UrlError::Unresolvable(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(vetted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for webhook deliveries: vetted DNS, no redirects, no
/// proxies from the environment, a total timeout per request.
pub fn delivery_client(policy: UrlPolicy, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(VettedResolver::new(policy.allow_private)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent("Switchboard-Webhook/1.0")
        .build()
        .expect("a client with these settings always builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_urls_are_refused() {
        let bad = [
            "http://example.com/hook",                   // not https in production
            "ftp://example.com/",                        // scheme
            "https://user:pw@example.com/",              // credentials
            "https://127.0.0.1/",                        // loopback
            "https://127.1.2.3:8443/",                   // loopback range
            "https://10.0.0.5/",                         // private
            "https://172.16.9.9/",                       // private
            "https://192.168.1.1/",                      // private
            "https://100.64.0.1/",                       // carrier-grade NAT
            "https://169.254.169.254/latest/meta-data/", // cloud metadata (link-local)
            "https://0.0.0.0/",                          // unspecified
            "https://224.0.0.1/",                        // multicast
            "https://255.255.255.255/",                  // broadcast
            "https://[::1]/",                            // IPv6 loopback
            "https://[::]/",                             // IPv6 unspecified
            "https://[fd00::1]/",                        // unique local
            "https://[fe80::1]/",                        // link-local
            "https://[ff02::1]/",                        // multicast
            "https://[::ffff:127.0.0.1]/",               // IPv4-mapped loopback
            "https://[::ffff:169.254.169.254]/",         // IPv4-mapped metadata
            "https://[64:ff9b::a9fe:a9fe]/",             // NAT64 form of the metadata address
            "https://2130706433/",                       // 127.0.0.1 as one decimal number
            "https://0x7f.0.0.1/",                       // 127.0.0.1 in hex
            "not a url",
            "https://",
        ];
        for url in bad {
            assert!(check_url(url, UrlPolicy::PRODUCTION).is_err(), "{url} should be refused");
        }
        assert!(check_url("https://hooks.example.com/switchboard?x=1", UrlPolicy::PRODUCTION).is_ok());
        assert!(check_url("https://93.184.216.34/", UrlPolicy::PRODUCTION).is_ok());
        assert!(check_url("https://[2606:4700::1111]/", UrlPolicy::PRODUCTION).is_ok());
    }

    #[test]
    fn the_local_switch_allows_loopback_and_private_but_not_metadata() {
        for ok in ["http://127.0.0.1:8080/hook", "http://localhost:9000/", "http://10.1.2.3/", "http://[::1]:3000/"] {
            assert!(check_url(ok, UrlPolicy::LOCAL).is_ok(), "{ok}");
        }
        for bad in ["http://169.254.169.254/", "http://[fe80::1]/", "http://0.0.0.0/", "ftp://127.0.0.1/"] {
            assert!(check_url(bad, UrlPolicy::LOCAL).is_err(), "{bad}");
        }
    }

    /// Issue 13, points 5 and 8.
    #[test]
    fn control_characters_local_names_and_the_ipv6_metadata_address_are_refused() {
        assert_eq!(
            check_url("https://127.0.0.1\n.example.com/", UrlPolicy::PRODUCTION),
            Err(UrlError::Control("a newline".into())),
            "a parser would store https://127.0.0.1.example.com/"
        );
        assert_eq!(
            check_url("https://hooks.example\t.com/", UrlPolicy::PRODUCTION),
            Err(UrlError::Control("a tab".into()))
        );
        for local in ["https://localhost/", "https://localhost./x", "https://api.localhost/", "https://LOCALHOST:8443/"]
        {
            assert!(matches!(check_url(local, UrlPolicy::PRODUCTION), Err(UrlError::Local(_))), "{local}");
            assert!(check_url(&local.replace("https", "http"), UrlPolicy::LOCAL).is_ok(), "local development: {local}");
        }
        for policy in [UrlPolicy::PRODUCTION, UrlPolicy::LOCAL] {
            assert!(check_url("http://[fd00:ec2::254]/latest/meta-data/", policy).is_err(), "IMDS over IPv6");
        }
    }

    #[tokio::test]
    async fn at_save_names_that_resolve_internally_are_refused() {
        let internal: [IpAddr; 2] = ["93.184.216.34".parse().unwrap(), "10.0.0.7".parse().unwrap()];
        assert_eq!(
            vet_resolved("crm.corp", internal),
            Err(UrlError::ResolvesInternal("crm.corp".into(), "10.0.0.7".parse().unwrap())),
            "one internal address is enough"
        );
        assert!(vet_resolved("crm.example", ["93.184.216.34".parse().unwrap()]).is_ok());
        let r = check_url_at_save("https://does-not-exist.invalid/", UrlPolicy::PRODUCTION).await;
        assert!(r.is_ok(), "a name that does not resolve now is accepted (delivery checks again): {r:?}");
        assert!(check_url_at_save("https://localhost./hook", UrlPolicy::PRODUCTION).await.is_err());
        assert!(check_url_at_save("http://localhost:9000/hook", UrlPolicy::LOCAL).await.is_ok());
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            check_url("http://example.com", UrlPolicy::PRODUCTION).unwrap_err().to_string(),
            "scheme 'http' is not allowed; use https"
        );
        assert_eq!(
            check_url("https://169.254.169.254/", UrlPolicy::PRODUCTION).unwrap_err().to_string(),
            "address 169.254.169.254 is not a public address"
        );
    }

    #[test]
    fn redacted_urls_keep_only_scheme_host_and_port() {
        assert_eq!(redacted("https://hooks.slack.com/services/T0/B0/s3cr3t"), "https://hooks.slack.com/…");
        assert_eq!(redacted("https://user:pw@crm.example:8443/hook?token=abc"), "https://crm.example:8443/…");
        assert_eq!(redacted("https://crm.example/"), "https://crm.example/");
        assert_eq!(redacted("nonsense"), "(not a URL)");
    }
}
