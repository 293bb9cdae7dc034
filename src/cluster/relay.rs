//! Controls for calls held by other nodes, over PostgreSQL `LISTEN/NOTIFY`. Each node listens on
//! a channel of its own; a node asked to act on a call it does not hold (a REST hang-up, an
//! answering-machine verdict) notifies the holder's channel and waits for its answer on its own,
//! so the API can answer once the call has been told, or 504 after `cluster.relay_timeout_ms`.
//! Notifications are not queued for a node that is not listening: a lost message is a timeout,
//! never a wrong answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::call::LiveCalls;
use crate::call::io::{AnsweredBy, Control};
use crate::store::{Store, StoreError};

/// A relayed control did not reach its call.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout { node: String, timeout: Duration },
}

/// This node's end of the relay: sends controls to other nodes and answers theirs.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<str>,
    store: Store,
    timeout: Duration,
    next_request: AtomicU64,
    /// Requests sent and not answered yet, by number.
    waiting: DashMap<u64, oneshot::Sender<bool>>,
}

/// What travels between nodes, as the payload of a notification.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// Act on a call (sent to the node holding it).
    Control {
        request: u64,
        reply_to: String,
        call_id: String,
        control: WireControl,
    },
    /// The call was told (`live`), or is not live there (sent back to the asking node).
    Acted { request: u64, live: bool },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum WireControl {
    HangUp,
    Shutdown,
    AnsweredBy(String),
}

impl From<&Control> for WireControl {
    fn from(control: &Control) -> Self {
        match control {
            Control::HangUp => WireControl::HangUp,
            Control::Shutdown => WireControl::Shutdown,
            Control::AnsweredBy(a) => WireControl::AnsweredBy(a.as_str().to_owned()),
        }
    }
}

impl WireControl {
    fn control(&self) -> Option<Control> {
        Some(match self {
            WireControl::HangUp => Control::HangUp,
            WireControl::Shutdown => Control::Shutdown,
            WireControl::AnsweredBy(a) => Control::AnsweredBy(AnsweredBy::parse(a)?),
        })
    }
}

/// The channel a node listens on.
fn channel(node: &str) -> String {
    format!("voxbridge_node_{node}")
}

impl Relay {
    /// Starts listening on this node's channel (before the node takes requests, so no control
    /// sent to it is missed); [`Relay::spawn`] then answers what arrives.
    pub async fn listen(
        database_url: &str,
        node: Arc<str>,
        store: Store,
        timeout: Duration,
    ) -> Result<(Self, PgListener), StoreError> {
        let mut listener = PgListener::connect(database_url).await?;
        listener.listen(&channel(&node)).await?;
        let relay = Self {
            inner: Arc::new(Inner {
                node,
                store,
                timeout,
                next_request: AtomicU64::new(1),
                waiting: DashMap::new(),
            }),
        };
        Ok((relay, listener))
    }

    /// Answers notifications until aborted: controls go to this node's live calls, answers to
    /// the requests waiting for them.
    pub fn spawn(&self, mut listener: PgListener, live: LiveCalls) -> JoinHandle<()> {
        let relay = self.clone();
        tokio::spawn(async move {
            loop {
                let notification = match listener.recv().await {
                    Ok(notification) => notification,
                    Err(e) => {
                        // The listener reconnects on its next receive; what was sent meanwhile
                        // is lost, and its sender times out.
                        tracing::warn!(error = %e, "relay listener lost its connection");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                match serde_json::from_str::<Message>(notification.payload()) {
                    Ok(message) => relay.receive(message, &live),
                    Err(e) => tracing::warn!(error = %e, "unreadable relay message"),
                }
            }
        })
    }

    fn receive(&self, message: Message, live: &LiveCalls) {
        match message {
            Message::Control {
                request,
                reply_to,
                call_id,
                control,
            } => {
                let delivered = control.control().is_some_and(|c| live.send(&call_id, c));
                let store = self.inner.store.clone();
                let answer = Message::Acted {
                    request,
                    live: delivered,
                };
                tokio::spawn(async move {
                    let payload = serde_json::to_string(&answer).expect("messages serialise");
                    if let Err(e) = store.notify(&channel(&reply_to), &payload).await {
                        tracing::warn!(error = %e, "relay answer not sent");
                    }
                });
            }
            Message::Acted { request, live } => {
                if let Some((_, waiting)) = self.inner.waiting.remove(&request) {
                    let _ = waiting.send(live);
                }
            }
        }
    }

    /// Tells the call `call_id` held by `node` to do `control`; answers whether the call was
    /// live there.
    pub async fn send(
        &self,
        node: &str,
        call_id: &str,
        control: &Control,
    ) -> Result<bool, RelayError> {
        let request = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.insert(request, tx);
        let message = Message::Control {
            request,
            reply_to: self.inner.node.to_string(),
            call_id: call_id.to_owned(),
            control: control.into(),
        };
        let payload = serde_json::to_string(&message).expect("messages serialise");
        if let Err(e) = self.inner.store.notify(&channel(node), &payload).await {
            self.inner.waiting.remove(&request);
            return Err(e.into());
        }
        match tokio::time::timeout(self.inner.timeout, rx).await {
            Ok(Ok(live)) => {
                let outcome = if live { "live" } else { "not_live" };
                metrics::counter!(crate::metrics::RELAYED_CONTROLS, "outcome" => outcome)
                    .increment(1);
                Ok(live)
            }
            _ => {
                metrics::counter!(crate::metrics::RELAYED_CONTROLS, "outcome" => "timeout")
                    .increment(1);
                self.inner.waiting.remove(&request);
                Err(RelayError::Timeout {
                    node: node.to_owned(),
                    timeout: self.inner.timeout,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_sent() {
        let message = Message::Control {
            request: 7,
            reply_to: "n1".into(),
            call_id: "c1".into(),
            control: (&Control::AnsweredBy(AnsweredBy::parse("human").unwrap())).into(),
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), message);
        let answer = r#"{"type":"acted","request":7,"live":true}"#;
        assert_eq!(
            serde_json::from_str::<Message>(answer).unwrap(),
            Message::Acted {
                request: 7,
                live: true
            }
        );
    }

    #[test]
    fn an_unknown_verdict_is_no_control() {
        assert_eq!(WireControl::AnsweredBy("robot".into()).control(), None);
        assert_eq!(WireControl::HangUp.control(), Some(Control::HangUp));
    }
}
