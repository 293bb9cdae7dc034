//! A fake Telnyx: Call Control's dial and call commands, TeXML's voice webhook for inbound calls,
//! and the life of each call, strict where the real API is (the Bearer API key, the Call Control
//! Application, E.164 numbers, `stream_bidirectional_mode`, base64 `client_state`) and answering
//! with Telnyx's shapes (`{"data": …}`, `{"errors": [{"code", "title", "detail"}]}`).
//!
//! - `POST /v2/calls` starts a call on its own task: `call.initiated`, then (per the number's
//!   outcome) `call.answered` + `streaming.started` and a simulated caller speaking Telnyx's
//!   stream protocol ([`caller_wire`]) against `stream_url`, or `call.hangup` with
//!   `user_busy`/`timeout`; at the end `streaming.stopped` and `call.hangup`. Every event is
//!   posted to the dial's `webhook_url`, signed with Ed25519 as Telnyx signs
//!   (`telnyx-signature-ed25519` over `"{telnyx-timestamp}|{body}"`).
//! - `POST /v2/calls/{id}/actions/hangup` ends it (422 with code 90018 once it has ended);
//!   `…/actions/transfer` ends the stream and records the target.
//! - [`TelnyxSim::simulate_inbound_call`] posts the signed TeXML voice webhook a Telnyx number
//!   would send, reads the `<Connect><Stream>` answer and connects the caller.

mod call;
pub mod caller_wire;
mod rest;
mod texml_reader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_lc_rs::signature::Ed25519KeyPair;
use axum::Router;
use axum::routing::post;
use tokio::sync::{mpsc, watch};

use super::caller::{CallerReport, CallerScript, RecordOptions};
use super::twilio::CallOutcome;
use crate::telephony::telnyx::signature;

/// The API key every fake accepts, so `voxbridge sim` works without a fixture.
pub const DEFAULT_API_KEY: &str = "KEY0000000000000000000000000000001_simsimsimsimsimsimsim";
/// The Call Control Application every fake knows.
pub const DEFAULT_CONNECTION_ID: &str = "1494404757140276705";
/// The fake's signing key's seed: fixed, so its public key is stable across runs.
const SIGNING_SEED: [u8; 32] = [7; 32];

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// A call as the fake knows it.
#[derive(Debug, Clone)]
pub struct TelnyxCall {
    pub call_control_id: String,
    pub direction: Direction,
    pub to: String,
    pub from: String,
    pub connection_id: String,
    pub stream_url: Option<String>,
    pub stream_track: Option<String>,
    pub bidirectional_mode: Option<String>,
    pub bidirectional_codec: Option<String>,
    pub client_state: Option<String>,
    pub webhook_url: Option<String>,
    pub timeout_secs: Option<u64>,
    pub answering_machine_detection: Option<String>,
    /// TeXML `<Parameter>`s of an inbound call's stream.
    pub custom_parameters: Vec<(String, String)>,
    /// `<Reject reason>` when an inbound call was refused.
    pub rejected: Option<String>,
    /// Event types posted, in order.
    pub events: Vec<String>,
    pub hangup_cause: Option<String>,
    pub hung_up_by_api: bool,
    pub transfers: Vec<String>,
    pub caller_report: Option<CallerReport>,
    /// A hang-up is under way or done: commands answer 90018.
    pub(crate) ended: bool,
    pub finished: bool,
}

/// A webhook the fake sent.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    pub url: String,
    /// `call.answered`, …, or `texml.voice` for an inbound call's voice webhook.
    pub event_type: String,
    /// The HTTP status answered (0: no answer).
    pub status: u16,
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

/// A change to a live call, from the REST handlers to the call's task.
#[derive(Debug)]
pub(crate) enum Interrupt {
    HangUp,
    Transfer(String),
}

#[derive(Default)]
struct State {
    api_keys: Vec<String>,
    connections: Vec<String>,
    outcomes: HashMap<String, CallOutcome>,
    scripts: HashMap<String, CallerScript>,
    default_script: CallerScript,
    /// A stream's longest life (the callee hangs up then).
    max_call: Option<Duration>,
    requests: Vec<RecordedRequest>,
    webhooks: Vec<SentWebhook>,
    calls: Vec<TelnyxCall>,
    index: HashMap<String, usize>,
    controls: HashMap<String, mpsc::Sender<Interrupt>>,
}

struct Inner {
    record: RecordOptions,
    key: Ed25519KeyPair,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    http: reqwest::Client,
}

/// The fake Telnyx. Cheap to clone (every clone is the same fake).
#[derive(Clone)]
pub struct TelnyxSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TelnyxSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelnyxSim").finish_non_exhaustive()
    }
}

impl Default for TelnyxSim {
    fn default() -> Self {
        Self::new(RecordOptions::default())
    }
}

/// An inbound call to simulate.
#[derive(Debug, Clone)]
pub struct InboundCall {
    /// The TeXML application's voice URL (voxbridge's `/telnyx/voice`).
    pub voice_url: String,
    pub from: String,
    pub to: String,
    pub script: Option<CallerScript>,
}

impl TelnyxSim {
    /// A fake with [`DEFAULT_API_KEY`] and [`DEFAULT_CONNECTION_ID`], every number answering.
    pub fn new(record: RecordOptions) -> Self {
        let (changed, _) = watch::channel(0);
        let key = Ed25519KeyPair::from_seed_unchecked(&SIGNING_SEED).expect("a 32-byte seed");
        let sim = Self {
            inner: Arc::new(Inner {
                record,
                key,
                state: Mutex::new(State::default()),
                changed,
                http: reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
            }),
        };
        {
            let mut state = sim.state();
            state.api_keys.push(DEFAULT_API_KEY.to_owned());
            state.connections.push(DEFAULT_CONNECTION_ID.to_owned());
        }
        sim
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

    /// The account's webhook public key, as the portal shows it (a trunk's `public_key`).
    pub fn public_key(&self) -> String {
        signature::public_key_base64(&self.inner.key)
    }

    /// The routes of the fake.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/calls", post(rest::dial))
            .route("/v2/calls/{id}/actions/{action}", post(rest::action))
            .with_state(self.clone())
    }

    /// What the person answering `number` does (default: [`Self::set_default_caller_script`]).
    pub fn set_caller_script(&self, number: &str, script: CallerScript) {
        self.state().scripts.insert(number.to_owned(), script);
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

    /// What happens when `number` is dialled.
    pub fn set_outcome(&self, number: &str, outcome: CallOutcome) {
        self.state().outcomes.insert(number.to_owned(), outcome);
    }

    pub fn calls(&self) -> Vec<TelnyxCall> {
        self.state().calls.clone()
    }

    pub fn call(&self, id: &str) -> Option<TelnyxCall> {
        let state = self.state();
        state.index.get(id).map(|&i| state.calls[i].clone())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.state().webhooks.clone()
    }

    /// Waits until the call has finished (its last webhook sent).
    pub async fn wait_for_call_end(&self, id: &str, timeout: Duration) -> Option<TelnyxCall> {
        let mut changed = self.inner.changed.subscribe();
        let wait = async {
            loop {
                if let Some(call) = self.call(id).filter(|c| c.finished) {
                    return call;
                }
                if changed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Rings `to` from `from`: the TeXML voice webhook, then the call as its answer says.
    /// Answers the call's `CallSid` (its call control id).
    pub fn simulate_inbound_call(&self, call: InboundCall) -> String {
        let id = new_call_control_id();
        let mut record = TelnyxCall::new(&id, Direction::Inbound, &call.to, &call.from);
        record.connection_id = DEFAULT_CONNECTION_ID.to_owned();
        let script = call.script.unwrap_or_else(|| self.script_for(&call.from));
        let interrupts = self.insert(record);
        tokio::spawn(call::run_inbound(
            self.clone(),
            id.clone(),
            call.voice_url,
            script,
            interrupts,
        ));
        id
    }

    fn script_for(&self, number: &str) -> CallerScript {
        let state = self.state();
        state
            .scripts
            .get(number)
            .cloned()
            .unwrap_or_else(|| state.default_script.clone())
    }

    fn insert(&self, call: TelnyxCall) -> mpsc::Receiver<Interrupt> {
        let (tx, rx) = mpsc::channel(8);
        let mut state = self.state();
        let id = call.call_control_id.clone();
        let i = state.calls.len();
        state.calls.push(call);
        state.index.insert(id.clone(), i);
        state.controls.insert(id, tx);
        drop(state);
        self.notify();
        rx
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TelnyxCall)) {
        let mut state = self.state();
        if let Some(&i) = state.index.get(id) {
            f(&mut state.calls[i]);
        }
        drop(state);
        self.notify();
    }

    fn record_request(&self, request: RecordedRequest) {
        self.state().requests.push(request);
    }

    /// Signs and posts `body` to `url` as Telnyx posts a webhook; answers the HTTP status.
    async fn post_signed(
        &self,
        url: &str,
        event_type: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> (u16, String) {
        let timestamp = signature::now_unix().to_string();
        let sig = signature::sign(&self.inner.key, &timestamp, &body);
        let result = self
            .inner
            .http
            .post(url)
            .header("content-type", content_type)
            .header(signature::TIMESTAMP_HEADER, &timestamp)
            .header(signature::SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await;
        let (status, text) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "telnyx fake webhook not delivered");
                (0, String::new())
            }
        };
        self.state().webhooks.push(SentWebhook {
            url: url.to_owned(),
            event_type: event_type.to_owned(),
            status,
        });
        (status, text)
    }
}

impl TelnyxCall {
    fn new(id: &str, direction: Direction, to: &str, from: &str) -> Self {
        Self {
            call_control_id: id.to_owned(),
            direction,
            to: to.to_owned(),
            from: from.to_owned(),
            connection_id: String::new(),
            stream_url: None,
            stream_track: None,
            bidirectional_mode: None,
            bidirectional_codec: None,
            client_state: None,
            webhook_url: None,
            timeout_secs: None,
            answering_machine_detection: None,
            custom_parameters: Vec::new(),
            rejected: None,
            events: Vec::new(),
            hangup_cause: None,
            hung_up_by_api: false,
            transfers: Vec::new(),
            caller_report: None,
            ended: false,
            finished: false,
        }
    }
}

/// A call control id shaped like Telnyx's (`v3:` and base64url text).
fn new_call_control_id() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    format!(
        "v3:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}
