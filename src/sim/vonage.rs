//! A fake Vonage Voice API: `POST /v1/calls` and `PUT /v1/calls/{uuid}` under application JWTs
//! (RS256, checked against the application's public key: `application_id`, `iat`, `exp`, `jti`),
//! the answer webhook of inbound calls, and the life of each call, strict where the real API is
//! (numbers without `+`, one phone endpoint, an NCCO or an answer URL, a websocket endpoint's
//! content type and headers) and answering with RFC 7807 problems.
//!
//! - `POST /v1/calls` starts a call on its own task: events `started`, `ringing`, then (per the
//!   number's outcome) `answered` and the NCCO's websocket connected with a simulated caller
//!   speaking Vonage's protocol ([`caller_wire`]), or `busy`/`timeout`/`failed`; `completed` at
//!   the end. Every event is posted as JSON to `event_url` with a signed-webhook token (HS256
//!   with the signature secret, `payload_hash` = SHA-256 of the body).
//! - `PUT /v1/calls/{uuid}` with `hangup` ends it (404 once it has ended); `transfer` ends the
//!   websocket leg and records the target.
//! - [`VonageSim::simulate_inbound_call`] fetches the answer URL with `GET` as Vonage does by
//!   default (signed, the query hashed), reads the NCCO and connects the caller.

mod call;
pub mod caller_wire;
mod rest;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::{post, put};
use tokio::sync::{mpsc, watch};

use super::caller::{CallerReport, CallerScript, RecordOptions};
use super::twilio::CallOutcome;
use crate::telephony::vonage::jwt::ApplicationKey;
use crate::telephony::vonage::signature;

/// The application every fake knows.
pub const DEFAULT_APPLICATION_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-000000000001";
/// The account's API key (named in signed webhooks).
pub const DEFAULT_API_KEY: &str = "a1b2c3d4";
/// The account's signature secret (signs webhooks).
pub const DEFAULT_SIGNATURE_SECRET: &str = "sim-signature-secret-0000000001";

/// The default application's private key: one per process (an RSA key takes a moment to make),
/// what a Vonage trunk's `trunk_auth_token` holds against the fake.
pub fn default_private_key() -> &'static str {
    static PEM: LazyLock<String> = LazyLock::new(ApplicationKey::generate_pem);
    &PEM
}

/// A websocket endpoint an NCCO connected: URI, content type, headers.
pub type WebsocketEndpoint = (String, String, Vec<(String, String)>);

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// A call as the fake knows it.
#[derive(Debug, Clone)]
pub struct VonageCall {
    pub uuid: String,
    pub direction: Direction,
    /// E.164 without `+`, as Vonage writes numbers.
    pub to: String,
    pub from: String,
    pub application_id: String,
    pub ncco: Option<serde_json::Value>,
    pub event_url: Option<String>,
    pub ringing_timer: Option<u64>,
    /// The websocket endpoint the NCCO connected: URI, content type, headers.
    pub websocket: Option<WebsocketEndpoint>,
    /// The NCCO refused or hung up the call (inbound).
    pub rejected: Option<String>,
    /// Statuses posted, in order.
    pub statuses: Vec<String>,
    pub hung_up_by_api: bool,
    pub transfers: Vec<serde_json::Value>,
    pub caller_report: Option<CallerReport>,
    pub(crate) ended: bool,
    pub finished: bool,
}

/// A webhook the fake sent.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    pub url: String,
    /// The event's `status`, or `answer` for an answer webhook.
    pub status_field: String,
    pub http_status: u16,
}

/// One request the REST API received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
    pub authenticated: bool,
    pub status: u16,
}

/// A change to a live call.
#[derive(Debug)]
pub(crate) enum Interrupt {
    HangUp,
    Transfer(serde_json::Value),
}

#[derive(Default)]
struct State {
    /// Application id → its public key (DER).
    applications: HashMap<String, Vec<u8>>,
    outcomes: HashMap<String, CallOutcome>,
    scripts: HashMap<String, CallerScript>,
    default_script: CallerScript,
    /// A stream's longest life (the callee hangs up then).
    max_call: Option<Duration>,
    requests: Vec<RecordedRequest>,
    webhooks: Vec<SentWebhook>,
    calls: Vec<VonageCall>,
    index: HashMap<String, usize>,
    controls: HashMap<String, mpsc::Sender<Interrupt>>,
}

struct Inner {
    record: RecordOptions,
    signature_secret: String,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    http: reqwest::Client,
}

/// The fake Vonage. Cheap to clone (every clone is the same fake).
#[derive(Clone)]
pub struct VonageSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VonageSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageSim").finish_non_exhaustive()
    }
}

impl Default for VonageSim {
    fn default() -> Self {
        Self::new(RecordOptions::default())
    }
}

/// An inbound call to simulate.
#[derive(Debug, Clone)]
pub struct InboundCall {
    /// The application's answer URL (voxbridge's `/vonage/voice`).
    pub answer_url: String,
    /// E.164, with or without `+`.
    pub from: String,
    pub to: String,
    pub script: Option<CallerScript>,
}

impl VonageSim {
    /// A fake knowing [`DEFAULT_APPLICATION_ID`] (its key: [`default_private_key`]), every
    /// number answering.
    pub fn new(record: RecordOptions) -> Self {
        let (changed, _) = watch::channel(0);
        let sim = Self {
            inner: Arc::new(Inner {
                record,
                signature_secret: DEFAULT_SIGNATURE_SECRET.to_owned(),
                state: Mutex::new(State::default()),
                changed,
                http: reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
            }),
        };
        let key = ApplicationKey::from_pem(default_private_key()).expect("a generated key reads");
        sim.add_application(DEFAULT_APPLICATION_ID, &key);
        sim
    }

    /// Registers an application and the key its tokens are checked with.
    pub fn add_application(&self, id: &str, key: &ApplicationKey) {
        self.state()
            .applications
            .insert(id.to_owned(), key.public_key_der());
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// The routes of the fake.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/calls", post(rest::create))
            .route("/v1/calls/{uuid}", put(rest::modify))
            .with_state(self.clone())
    }

    /// What the person answering `number` (E.164) does.
    pub fn set_caller_script(&self, number: &str, script: CallerScript) {
        self.state()
            .scripts
            .insert(number.trim_start_matches('+').to_owned(), script);
    }

    pub fn set_default_caller_script(&self, script: CallerScript) {
        self.state().default_script = script;
    }

    /// How long a call's stream may last before the callee hangs up (default 10 minutes).
    pub fn set_max_call_duration(&self, limit: Duration) {
        self.state().max_call = Some(limit);
    }

    fn max_call(&self) -> Duration {
        self.state().max_call.unwrap_or(Duration::from_secs(600))
    }

    /// What happens when `number` (E.164) is called.
    pub fn set_outcome(&self, number: &str, outcome: CallOutcome) {
        self.state()
            .outcomes
            .insert(number.trim_start_matches('+').to_owned(), outcome);
    }

    pub fn calls(&self) -> Vec<VonageCall> {
        self.state().calls.clone()
    }

    pub fn call(&self, uuid: &str) -> Option<VonageCall> {
        let state = self.state();
        state.index.get(uuid).map(|&i| state.calls[i].clone())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.state().webhooks.clone()
    }

    /// Waits until the call has finished (its last event sent).
    pub async fn wait_for_call_end(&self, uuid: &str, timeout: Duration) -> Option<VonageCall> {
        let mut changed = self.inner.changed.subscribe();
        let wait = async {
            loop {
                if let Some(call) = self.call(uuid).filter(|c| c.finished) {
                    return call;
                }
                if changed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Rings `to` from `from`: the answer webhook, then the call as its NCCO says. Answers the
    /// call's uuid.
    pub fn simulate_inbound_call(&self, call: InboundCall) -> String {
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut record = VonageCall::new(
            &uuid,
            Direction::Inbound,
            call.to.trim_start_matches('+'),
            call.from.trim_start_matches('+'),
        );
        record.application_id = DEFAULT_APPLICATION_ID.to_owned();
        let script = call.script.unwrap_or_else(|| self.script_for(&record.from));
        let interrupts = self.insert(record);
        tokio::spawn(call::run_inbound(
            self.clone(),
            uuid.clone(),
            call.answer_url,
            script,
            interrupts,
        ));
        uuid
    }

    fn script_for(&self, number: &str) -> CallerScript {
        let state = self.state();
        state
            .scripts
            .get(number)
            .cloned()
            .unwrap_or_else(|| state.default_script.clone())
    }

    fn insert(&self, call: VonageCall) -> mpsc::Receiver<Interrupt> {
        let (tx, rx) = mpsc::channel(8);
        let mut state = self.state();
        let uuid = call.uuid.clone();
        let i = state.calls.len();
        state.calls.push(call);
        state.index.insert(uuid.clone(), i);
        state.controls.insert(uuid, tx);
        drop(state);
        self.notify();
        rx
    }

    fn update(&self, uuid: &str, f: impl FnOnce(&mut VonageCall)) {
        let mut state = self.state();
        if let Some(&i) = state.index.get(uuid) {
            f(&mut state.calls[i]);
        }
        drop(state);
        self.notify();
    }

    fn record_request(&self, request: RecordedRequest) {
        self.state().requests.push(request);
    }

    /// Sends a signed webhook as Vonage does: POST with a JSON body, or GET with `query` (the
    /// token's `payload_hash` covers whichever carries the payload). Answers status and body.
    async fn send_signed(
        &self,
        url: &str,
        label: &str,
        body: Option<Vec<u8>>,
        query: &[(String, String)],
    ) -> (u16, String) {
        let now = crate::telephony::vonage::now_unix();
        let payload = body.as_deref().unwrap_or_default();
        let authorization = signature::authorization(
            &self.inner.signature_secret,
            DEFAULT_API_KEY,
            DEFAULT_APPLICATION_ID,
            payload,
            if body.is_some() { &[] } else { query },
            now,
        );
        let request = match body {
            Some(body) => self
                .inner
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
            None => {
                let mut target = url::Url::parse(url).ok();
                if let Some(target) = &mut target {
                    target.query_pairs_mut().extend_pairs(query);
                }
                self.inner
                    .http
                    .get(target.map(String::from).unwrap_or_else(|| url.to_owned()))
            }
        };
        let (status, text) = match request.header("authorization", authorization).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "vonage fake webhook not delivered");
                (0, String::new())
            }
        };
        self.state().webhooks.push(SentWebhook {
            url: url.to_owned(),
            status_field: label.to_owned(),
            http_status: status,
        });
        (status, text)
    }
}

impl VonageCall {
    fn new(uuid: &str, direction: Direction, to: &str, from: &str) -> Self {
        Self {
            uuid: uuid.to_owned(),
            direction,
            to: to.to_owned(),
            from: from.to_owned(),
            application_id: String::new(),
            ncco: None,
            event_url: None,
            ringing_timer: None,
            websocket: None,
            rejected: None,
            statuses: Vec::new(),
            hung_up_by_api: false,
            transfers: Vec::new(),
            caller_report: None,
            ended: false,
            finished: false,
        }
    }
}
