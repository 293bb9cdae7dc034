//! The HTTP client for owner-chosen URLs. Its resolver checks every address a name resolves to
//! against the policy and hands only checked addresses to the connector, so the address that was
//! checked is the address connected to (a second DNS answer cannot slip in between). Literal IP
//! hosts never reach a resolver, so they are checked before the request is built. Redirects are
//! not followed: a public receiver answering `302 Location: http://169.254.169.254/` must not
//! turn into a request to the metadata service.

use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use super::{AddressError, AddressPolicy};

/// A `reqwest::Client` that only reaches addresses the policy allows.
#[derive(Debug, Clone)]
pub struct EgressClient {
    http: reqwest::Client,
    policy: AddressPolicy,
}

impl EgressClient {
    pub fn new(policy: AddressPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver(policy)))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past our resolver.
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self { http, policy })
    }

    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// The client to send a request to `url` with, once `url`'s literal host (if it has one)
    /// passed the policy; names are checked by the client's resolver when it connects.
    pub fn client_for(&self, url: &Url) -> Result<&reqwest::Client, AddressError> {
        self.policy.check_literal_host(url)?;
        Ok(&self.http)
    }

    /// The policy's refusal behind a failed request, when that is why it failed.
    pub fn refusal_of<'e>(
        error: &'e (dyn std::error::Error + 'static),
    ) -> Option<&'e AddressError> {
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(refusal) = e.downcast_ref::<AddressError>() {
                return Some(refusal);
            }
            source = e.source();
        }
        None
    }
}

/// Resolves with the system resolver, then refuses the name if any address is not allowed.
struct PolicyResolver(AddressPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            // The connector sets the URL's port on each address; 0 is a placeholder.
            let addrs = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn local_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let app = axum::Router::new()
                .route("/ok", axum::routing::get(|| async { "fine" }))
                .route(
                    "/redirect",
                    axum::routing::get(|| async {
                        axum::response::Redirect::temporary("http://169.254.169.254/latest")
                    }),
                );
            axum::serve(listener, app).await.unwrap();
        });
        (addr, task)
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_are_not_connected_to() {
        let (addr, _server) = local_server().await;
        let client = EgressClient::new(AddressPolicy::default()).unwrap();
        let url = Url::parse(&format!("http://localhost:{}/ok", addr.port())).unwrap();
        let http = client
            .client_for(&url)
            .expect("names pass the literal check");
        let error = http.get(url).send().await.expect_err("refused at connect");
        let refusal = EgressClient::refusal_of(&error).expect("the refusal is in the chain");
        assert!(matches!(
            refusal,
            AddressError::Refused {
                kind: "loopback",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn literal_addresses_are_refused_before_any_request() {
        let client = EgressClient::new(AddressPolicy::default()).unwrap();
        let url = Url::parse("http://2130706433:9/x").unwrap();
        assert!(matches!(
            client.client_for(&url),
            Err(AddressError::Refused { .. })
        ));
    }

    #[tokio::test]
    async fn allowed_addresses_are_reached_and_redirects_are_not_followed() {
        let (addr, _server) = local_server().await;
        let client = EgressClient::new(AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        })
        .unwrap();
        let url = Url::parse(&format!("http://localhost:{}/ok", addr.port())).unwrap();
        let body = client.client_for(&url).unwrap().get(url).send().await;
        assert_eq!(body.unwrap().text().await.unwrap(), "fine");
        let url = Url::parse(&format!("http://127.0.0.1:{}/redirect", addr.port())).unwrap();
        let response = client
            .client_for(&url)
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            307,
            "the redirect is answered, not followed"
        );
    }
}
