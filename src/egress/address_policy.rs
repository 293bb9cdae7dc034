//! Which addresses a webhook may reach. An assistant's end-call URL is chosen by an API user, so
//! without a policy it could make the server call its own admin ports or the cloud metadata
//! service (server-side request forgery). URLs whose host resolves to a loopback, private,
//! link-local or otherwise non-public address are refused unless the operator allows them; the
//! resolved address is then pinned for the request, so DNS cannot change it in between.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the operator allows beyond the public internet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressPolicy {
    /// Allow 127.0.0.0/8 and ::1 (tests, a receiver on the same host).
    pub allow_loopback: bool,
    /// Allow private, link-local, CGNAT and unique-local ranges.
    pub allow_private: bool,
}

/// Why a webhook URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("webhook URL is invalid: {0}")]
    BadUrl(String),
    #[error("webhook host {0} does not resolve")]
    Unresolvable(String),
    #[error("webhook host {host} resolves to {addr}, which is not allowed ({kind})")]
    Refused {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
}

impl AddressPolicy {
    /// Resolves `url`'s host and answers the address to connect to, or why not.
    pub async fn resolve(&self, url: &url::Url) -> Result<SocketAddr, AddressError> {
        let host = url
            .host_str()
            .ok_or_else(|| AddressError::BadUrl("no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| AddressError::BadUrl("no port".into()))?;
        let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host_for_lookup, port))
            .await
            .map_err(|_| AddressError::Unresolvable(host.to_owned()))?
            .collect();
        if addrs.is_empty() {
            return Err(AddressError::Unresolvable(host.to_owned()));
        }
        // Every address must pass: a name with one public and one private address could be
        // steered to the private one.
        for addr in &addrs {
            if let Some(kind) = self.refusal(addr.ip()) {
                return Err(AddressError::Refused {
                    host: host.to_owned(),
                    addr: addr.ip(),
                    kind,
                });
            }
        }
        Ok(addrs[0])
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
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Class::Loopback
            } else if v6.is_unspecified() || v6.is_multicast() {
                Class::Reserved
            } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                // Unique local (fc00::/7) and link-local (fe80::/10).
                Class::Private
            } else if v6 == Ipv6Addr::UNSPECIFIED {
                Class::Reserved
            } else {
                Class::Public
            }
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, 169.254/16 (cloud metadata lives here), 100.64/10 (carrier-grade NAT).
        Class::Private
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
    {
        Class::Reserved
    } else {
        Class::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: AddressPolicy, ip: &str) -> bool {
        policy.refusal(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn default_policy_allows_only_public_addresses() {
        let p = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(refused(p, ip), "{ip} should be refused");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!refused(p, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn operators_can_open_loopback_and_private() {
        let loopback = AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(!refused(loopback, "127.0.0.1") && !refused(loopback, "::1"));
        assert!(refused(loopback, "10.0.0.1"));
        let private = AddressPolicy {
            allow_loopback: false,
            allow_private: true,
        };
        assert!(!refused(private, "10.0.0.1") && !refused(private, "169.254.169.254"));
        assert!(refused(private, "127.0.0.1"));
        assert!(refused(
            AddressPolicy {
                allow_loopback: true,
                allow_private: true
            },
            "0.0.0.0"
        ));
    }

    #[tokio::test]
    async fn urls_are_resolved_and_checked() {
        let p = AddressPolicy::default();
        let url = url::Url::parse("http://127.0.0.1:9/x").unwrap();
        assert!(matches!(
            p.resolve(&url).await,
            Err(AddressError::Refused { .. })
        ));
        let open = AddressPolicy {
            allow_loopback: true,
            ..p
        };
        assert_eq!(
            open.resolve(&url).await.unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        let localhost = url::Url::parse("http://localhost:9/x").unwrap();
        assert!(p.resolve(&localhost).await.is_err());
    }
}
