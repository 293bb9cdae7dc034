//! End-of-call webhooks: signed, retried with exponential backoff, and durable. Each delivery is
//! a row in the store's outbox; a worker sends due rows, so a restart resumes what was pending and
//! a receiver that is down for an hour still gets its report.
//!
//! Every server process sharing the database runs a worker; each claims the rows it sends for a
//! lease (`webhook.lease_ms`), so a delivery goes out from one process at a time. A process that
//! dies mid-attempt leaves its rows to others once the lease expires: delivery is at least once,
//! and receivers deduplicate on `X-Voxbridge-Delivery`.

mod signature;

pub use signature::{SIGNATURE_HEADER, sign, verify};

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::egress::{AddressError, EgressClient};
use crate::store::{
    AttemptRecord, PendingDelivery, Store, StoreError, format_timestamp, now_timestamp,
};

/// Settings of webhook delivery (`[webhook]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// HMAC-SHA256 key for `X-Voxbridge-Signature`. Empty: a random secret is generated on
    /// first start and kept in the database (`voxbridge webhook-secret` prints it).
    pub secret: String,
    /// Deprecated: `egress.allow_loopback`, which covers webhooks, tools and LLM endpoints.
    pub allow_loopback: bool,
    /// Deprecated: `egress.allow_private`.
    pub allow_private: bool,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    /// Per-attempt timeout, in milliseconds.
    pub timeout_ms: u64,
    /// First retry delay, in milliseconds; doubles per attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// How long a worker holds the deliveries it claimed before another server process sharing
    /// the database may take them over, in milliseconds. At least `timeout_ms` + 1 s is used, so
    /// an attempt still in flight is never taken over.
    pub lease_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            secret: String::new(),
            allow_loopback: false,
            allow_private: false,
            max_attempts: 10,
            timeout_ms: 10_000,
            retry_base_ms: 2_000,
            retry_max_ms: 600_000,
            lease_ms: 60_000,
        }
    }
}

/// The server's webhook sender: enqueue reports, and a worker that delivers them.
#[derive(Clone)]
pub struct Webhooks {
    store: Store,
    settings: Arc<WebhookSettings>,
    secret: Arc<str>,
    wake: Arc<Notify>,
    egress: EgressClient,
    /// Who this worker is in `claimed_by`: one id per process run, so a restarted process does
    /// not mistake its predecessor's claims for its own.
    node: Arc<str>,
    /// Set at shutdown: the worker claims nothing more and ends once its attempts in flight do.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Why one attempt failed.
struct AttemptError {
    message: String,
    /// Whether another attempt could succeed (a 400 will not).
    retryable: bool,
    /// The receiver's HTTP status, when it answered.
    status: Option<u16>,
}

/// The payload's `event` (`call.ended`, `chat.ended`), sent as `X-Voxbridge-Event`.
fn event_of(payload: &str) -> String {
    #[derive(Deserialize)]
    struct Event {
        event: String,
    }
    serde_json::from_str::<Event>(payload)
        .map(|e| e.event)
        .unwrap_or_else(|_| "call.ended".to_owned())
}

/// How many deliveries are sent at once, and so claimed at once: a claimed delivery is attempted
/// at once, never queued behind others while its lease runs.
const PARALLEL_DELIVERIES: usize = 8;
/// How often the worker looks for due deliveries when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

impl Webhooks {
    /// Loads (or creates, once) the signing secret. Receivers are reached through `egress`, so
    /// the owner-chosen URL passes the address policy on the address actually connected to.
    pub async fn new(
        store: Store,
        settings: WebhookSettings,
        egress: EgressClient,
    ) -> Result<Self, StoreError> {
        let secret = if settings.secret.is_empty() {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).expect("the OS random source is available");
            let generated: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            store
                .init_server_setting("webhook_secret", &format!("whsec_{generated}"))
                .await?
        } else {
            settings.secret.clone()
        };
        Ok(Self {
            store,
            settings: Arc::new(settings),
            secret: secret.into(),
            wake: Arc::new(Notify::new()),
            stopping: Arc::default(),
            egress,
            node: uuid::Uuid::now_v7().to_string().into(),
        })
    }

    /// Claims deliveries as `node` (the server's node id), so a survivor that finds the node
    /// lost can hand its claims back at once instead of waiting out their leases.
    pub fn on_node(mut self, node: Arc<str>) -> Self {
        self.node = node;
        self
    }

    /// The secret receivers verify signatures with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Queues `payload` for `url` and wakes the worker.
    pub async fn enqueue(
        &self,
        call_id: &str,
        url: &str,
        payload: &serde_json::Value,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.store
            .enqueue_webhook(&id, call_id, url, &payload.to_string())
            .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Queues `payload` for `url`, held for `hold` (see [`Store::enqueue_webhook_at`]): a report
    /// that waits for something (the conversation's analysis) yet is already durable.
    pub async fn enqueue_held(
        &self,
        call_id: &str,
        url: &str,
        payload: &serde_json::Value,
        hold: Duration,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let due = format_timestamp(time::OffsetDateTime::now_utc() + hold);
        self.store
            .enqueue_webhook_at(&id, call_id, url, &payload.to_string(), &due)
            .await?;
        Ok(id)
    }

    /// Sends a held delivery now with `payload` instead; false if its hold already expired and
    /// it went out as it was.
    pub async fn release(&self, id: &str, payload: &serde_json::Value) -> Result<bool, StoreError> {
        let released = self
            .store
            .release_held_webhook(id, &payload.to_string())
            .await?;
        if released {
            self.wake.notify_one();
        }
        Ok(released)
    }

    /// This worker's id in the outbox's claims.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Gives back the deliveries this worker claimed and has not finished (call it once the
    /// worker is stopped), so another process sends them without waiting for the lease.
    pub async fn release_claims(&self) -> Result<u64, StoreError> {
        self.store.release_webhook_claims(&self.node).await
    }

    /// The lease a claim gets: the configured one, but never shorter than an attempt can last.
    fn lease(&self) -> Duration {
        Duration::from_millis(
            self.settings
                .lease_ms
                .max(self.settings.timeout_ms.saturating_add(1_000)),
        )
    }

    /// Starts the delivery worker; it runs until the task is aborted.
    pub fn spawn_worker(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.work().await })
    }

    /// Stops the worker gracefully: it claims nothing more and its task ends once the attempts
    /// in flight have their outcome stored, which takes at most [`Webhooks::attempt_timeout`].
    /// A graceful stop (a rolling restart) then sends nothing twice; handing claims back is left
    /// for attempts that had to be cut off.
    pub fn stop_claiming(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The longest one attempt may take.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    async fn work(self) {
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let now = time::OffsetDateTime::now_utc();
            let lease_until = format_timestamp(now + self.lease());
            let claimed = self
                .store
                .claim_due_webhooks(
                    &format_timestamp(now),
                    &lease_until,
                    &self.node,
                    PARALLEL_DELIVERIES as i64,
                )
                .await;
            match claimed {
                Ok(due) if !due.is_empty() => {
                    futures_util::stream::iter(due)
                        .for_each_concurrent(PARALLEL_DELIVERIES, |d| self.deliver(d))
                        .await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the webhook outbox"),
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    async fn deliver(&self, delivery: PendingDelivery) {
        let started_at = now_timestamp();
        let started = std::time::Instant::now();
        let result = self.attempt(&delivery).await;
        let mut attempt = AttemptRecord {
            delivery_id: delivery.id.clone(),
            attempt: delivery.attempts + 1,
            started_at,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status_code: None,
            outcome: String::new(),
            error: None,
        };
        let stored = match result {
            Ok(status) => {
                attempt.status_code = Some(i64::from(status));
                attempt.outcome = "delivered".to_owned();
                tracing::info!(
                    delivery = delivery.id,
                    call_id = delivery.call_id,
                    "webhook delivered"
                );
                metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => "delivered")
                    .increment(1);
                self.store.webhook_delivered(&delivery.id, &self.node).await
            }
            Err(error) => {
                let attempts = delivery.attempts + 1;
                let next = (error.retryable && attempts < i64::from(self.settings.max_attempts))
                    .then(|| {
                        let delay = self.backoff(attempts);
                        format_timestamp(time::OffsetDateTime::now_utc() + delay)
                    });
                tracing::warn!(
                    delivery = delivery.id,
                    call_id = delivery.call_id,
                    attempts,
                    error = error.message,
                    retry_at = next.as_deref().unwrap_or("never"),
                    "webhook attempt failed"
                );
                let outcome = if next.is_some() { "retry" } else { "failed" };
                attempt.status_code = error.status.map(i64::from);
                attempt.outcome = outcome.to_owned();
                attempt.error = Some(error.message.clone());
                metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => outcome)
                    .increment(1);
                self.store
                    .webhook_attempt_failed(
                        &delivery.id,
                        &self.node,
                        &error.message,
                        next.as_deref(),
                    )
                    .await
            }
        };
        match stored {
            Ok(true) => {
                // Only the holder's attempt is history; one whose claim was lost is not.
                if let Err(e) = self.store.record_webhook_attempt(&attempt).await {
                    tracing::warn!(delivery = delivery.id, error = %e, "webhook attempt not recorded");
                }
            }
            // Only when the attempt outlived the lease (a stalled process or a clock that
            // jumped): the new holder's outcome stands.
            Ok(false) => tracing::warn!(
                delivery = delivery.id,
                "webhook claim lost before the outcome was stored"
            ),
            Err(e) => {
                tracing::error!(delivery = delivery.id, error = %e, "webhook outcome not stored")
            }
        }
    }

    /// `base × 2^(attempts-1)`, capped, with ±20 % jitter so receivers that come back are not hit
    /// by every sender at the same instant.
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(30);
        let delay = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.settings.retry_max_ms);
        let mut noise = [0u8; 1];
        getrandom::fill(&mut noise).expect("the OS random source is available");
        let factor = 0.8 + 0.4 * f64::from(noise[0]) / 255.0;
        Duration::from_millis((delay as f64 * factor) as u64)
    }

    /// One attempt; answers the receiver's (successful) status.
    async fn attempt(&self, delivery: &PendingDelivery) -> Result<u16, AttemptError> {
        let fail = |message: String, retryable: bool| AttemptError {
            message,
            retryable,
            status: None,
        };
        let url = url::Url::parse(&delivery.url).map_err(|e| fail(e.to_string(), false))?;
        // A refused address stays refused; a name that does not resolve may resolve later.
        let refused =
            |e: &AddressError| fail(e.to_string(), matches!(e, AddressError::Unresolvable(_)));
        let client = self.egress.client_for(&url).map_err(|e| refused(&e))?;
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&self.secret, timestamp, delivery.payload.as_bytes());
        let response = client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("X-Voxbridge-Event", event_of(&delivery.payload))
            .header("X-Voxbridge-Delivery", &delivery.id)
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|e| match EgressClient::refusal_of(&e) {
                Some(refusal) => refused(refusal),
                None => fail(format!("request failed: {e}"), true),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        // Retry what may pass later (timeouts, rate limits, server errors); a receiver that
        // refuses the request itself will refuse it again.
        let retryable =
            status.is_server_error() || matches!(status.as_u16(), 408 | 409 | 425 | 429);
        Err(AttemptError {
            message: format!("receiver answered HTTP {}", status.as_u16()),
            retryable,
            status: Some(status.as_u16()),
        })
    }
}
