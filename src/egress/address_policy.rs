//! Which addresses a request to an owner-chosen URL may reach. A webhook, a tool or an assistant's
//! LLM base URL is chosen by an API user, so without a policy it could make the server call its
//! own admin ports, the cloud metadata service or hosts on the private network (server-side
//! request forgery). Loopback, private, link-local, unique-local and reserved addresses are
//! refused unless the operator allows them.
//!
//! The policy is applied twice: to the URL's text when it is saved ([`AddressPolicy::check_url`],
//! a 400 naming the field), and to every address the host resolves to when a request is made
//! (the egress client's resolver), so a name that resolves to a private address, or changes its
//! answer after it was saved, is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// What the operator allows beyond the public internet (`[egress]` in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressPolicy {
    /// Allow 127.0.0.0/8, ::1 and `localhost` (tests, a receiver on the same host).
    pub allow_loopback: bool,
    /// Allow private, link-local (the metadata service), CGNAT and unique-local ranges.
    pub allow_private: bool,
}

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("URL is invalid: {0}")]
    BadUrl(String),
    #[error("host {0} does not resolve")]
    Unresolvable(String),
    #[error("host {host} is {addr}, which is not allowed ({kind})")]
    Refused {
        host: String,
        addr: String,
        kind: &'static str,
    },
}

/// Names that are loopback by definition (RFC 6761) or that cloud providers resolve to their
/// metadata service; refused when saved, before any resolver is asked.
const METADATA_NAMES: [&str; 3] = ["metadata.google.internal", "metadata.goog", "metadata"];

impl AddressPolicy {
    /// Checks a URL's text as it is saved: an absolute http(s) URL with a host, whose host is not
    /// a refused literal address or a refused well-known name. Names are checked again on the
    /// addresses they resolve to when the URL is called.
    pub fn check_url(&self, value: &str) -> Result<Url, String> {
        let url = crate::validation::check_http_url(value)?;
        match self.refused_host(&url) {
            Some(refusal) => Err(format!("must not point at {refusal}")),
            None => Ok(url),
        }
    }

    /// Why the literal host of `url` is refused, if it is (the resolver never sees literals).
    pub fn check_literal_host(&self, url: &Url) -> Result<(), AddressError> {
        match url.host() {
            None => Err(AddressError::BadUrl("no host".into())),
            Some(Host::Domain(_)) => Ok(()),
            Some(Host::Ipv4(v4)) => self.check_ip(&v4.to_string(), IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(&v6.to_string(), IpAddr::V6(v6)),
        }
    }

    /// Every address `host` resolves to, each checked: a name with one public and one private
    /// address could be steered to the private one, so one refusal refuses the name.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| AddressError::Unresolvable(host.to_owned()))?
            .collect();
        if addrs.is_empty() {
            return Err(AddressError::Unresolvable(host.to_owned()));
        }
        for addr in &addrs {
            self.check_ip(host, addr.ip())?;
        }
        Ok(addrs)
    }

    fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), AddressError> {
        match self.refusal(ip) {
            None => Ok(()),
            Some(kind) => Err(AddressError::Refused {
                host: host.to_owned(),
                addr: ip.to_string(),
                kind,
            }),
        }
    }

    /// A description of what `url`'s host is when this policy refuses it as written.
    fn refused_host(&self, url: &Url) -> Option<String> {
        match url.host()? {
            Host::Ipv4(v4) => self
                .refusal(IpAddr::V4(v4))
                .map(|kind| format!("{v4}, a {kind} address")),
            Host::Ipv6(v6) => self
                .refusal(IpAddr::V6(v6))
                .map(|kind| format!("{v6}, a {kind} address")),
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if (name == "localhost" || name.ends_with(".localhost")) && !self.allow_loopback {
                    Some(format!("{name}, a loopback name"))
                } else if METADATA_NAMES.contains(&name.as_str()) && !self.allow_private {
                    Some(format!("{name}, a cloud metadata service"))
                } else {
                    None
                }
            }
        }
    }

    /// Why `ip` is refused under this policy, if it is.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        match classify(ip) {
            Class::Public => None,
            Class::Loopback if self.allow_loopback => None,
            Class::Loopback => Some("loopback"),
            Class::Private if self.allow_private => None,
            Class::Private => Some("private or link-local"),
            Class::Reserved => Some("reserved"),
        }
    }
}

enum Class {
    Public,
    Loopback,
    Private,
    Reserved,
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, 169.254/16 (cloud metadata lives here), 100.64/10 (carrier-grade NAT, where
        // some clouds put theirs).
        Class::Private
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        // 192.0.0/24 (protocol assignments), 192.88.99/24 (6to4 relays), 198.18/15 (benchmarks).
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
    {
        Class::Reserved
    } else {
        Class::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_unspecified() || ip.is_multicast() {
        Class::Reserved
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d reaches the IPv4 address itself.
        classify_v4(v4)
    } else if s[..6] == [0; 6] {
        // ::a.b.c.d, the deprecated IPv4-compatible form, still routes to IPv4 on some stacks.
        classify_v4(embedded_v4(s[6], s[7]))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
    {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48) translates to the IPv4 address.
        classify_v4(embedded_v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        // 6to4 carries the IPv4 address in bits 16-47.
        classify_v4(embedded_v4(s[1], s[2]))
    } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        // Unique local (fc00::/7, where AWS puts its IPv6 metadata service), link-local
        // (fe80::/10) and the deprecated site-local (fec0::/10).
        Class::Private
    } else if (s[0] == 0x2001 && matches!(s[1], 0 | 0x0db8)) || s[..4] == [0x100, 0, 0, 0] {
        // Documentation (2001:db8::/32), Teredo (2001::/32, tunnels to any IPv4 address) and
        // discard-only (100::/64).
        Class::Reserved
    } else {
        Class::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: AddressPolicy = AddressPolicy {
        allow_loopback: true,
        allow_private: false,
    };
    const PRIVATE: AddressPolicy = AddressPolicy {
        allow_loopback: false,
        allow_private: true,
    };

    fn refused(policy: AddressPolicy, ip: &str) -> bool {
        policy.refusal(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn default_policy_allows_only_public_addresses() {
        let p = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fec0::1",
            "fd00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(refused(p, ip), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!refused(p, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn operators_can_open_loopback_and_private() {
        assert!(!refused(LOOPBACK, "127.0.0.1") && !refused(LOOPBACK, "::1"));
        assert!(refused(LOOPBACK, "10.0.0.1"));
        assert!(!refused(PRIVATE, "10.0.0.1") && !refused(PRIVATE, "169.254.169.254"));
        assert!(refused(PRIVATE, "127.0.0.1"));
        let both = AddressPolicy {
            allow_loopback: true,
            allow_private: true,
        };
        assert!(refused(both, "0.0.0.0"), "unspecified is never a receiver");
    }

    #[test]
    fn every_spelling_of_a_literal_address_is_refused_when_saved() {
        let p = AddressPolicy::default();
        // The URL parser normalises IPv4 the way browsers and curl do, so decimal, hex, octal
        // and short forms all reach the classifier as the address they mean.
        for url in [
            "http://127.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://0x7f.0.0.1/x",
            "http://0177.0.0.1/x",
            "http://017700000001/x",
            "http://127.1/x",
            "http://127.0.1/x",
            "http://0/x",
            "http://[::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data",
            "http://169.254.169.254/latest/meta-data",
            "http://0xa9fea9fe/",
            "http://10.0.0.1:8080/",
            "http://[fd00:ec2::254]/",
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "https://user:pw@127.0.0.1/",
        ] {
            let why = p.check_url(url).expect_err(url);
            assert!(why.starts_with("must not point at"), "{url}: {why}");
        }
        for url in ["https://example.com/hook", "http://8.8.8.8:8080/x"] {
            assert!(p.check_url(url).is_ok(), "{url}");
        }
        assert!(LOOPBACK.check_url("http://localhost:9000/").is_ok());
        assert!(LOOPBACK.check_url("http://2130706433/").is_ok());
        assert!(
            PRIVATE
                .check_url("http://metadata.google.internal/")
                .is_ok()
        );
    }

    #[test]
    fn malformed_urls_are_refused_when_saved() {
        let p = AddressPolicy::default();
        for url in [
            "http:///x",
            "http:example.com",
            "ftp://example.com",
            "http://",
            "/x",
        ] {
            assert!(p.check_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_at_request_time() {
        let p = AddressPolicy::default();
        let url = Url::parse("http://0x7f000001:9/x").unwrap();
        assert!(matches!(
            p.check_literal_host(&url),
            Err(AddressError::Refused { .. })
        ));
        assert!(LOOPBACK.check_literal_host(&url).is_ok());
        let name = Url::parse("http://example.com/").unwrap();
        assert!(
            p.check_literal_host(&name).is_ok(),
            "names go to the resolver"
        );
    }

    #[tokio::test]
    async fn names_are_checked_on_every_address_they_resolve_to() {
        let p = AddressPolicy::default();
        assert!(matches!(
            p.resolve("localhost", 9).await,
            Err(AddressError::Refused { .. })
        ));
        assert!(matches!(
            p.resolve("127.0.0.1", 9).await,
            Err(AddressError::Refused { .. })
        ));
        let addrs = LOOPBACK.resolve("127.0.0.1", 9).await.unwrap();
        assert_eq!(addrs, ["127.0.0.1:9".parse().unwrap()]);
        assert!(matches!(
            p.resolve("no-such-host.invalid", 80).await,
            Err(AddressError::Unresolvable(_))
        ));
    }
}
