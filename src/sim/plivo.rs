//! A fake Plivo: the Call API and the life of each call, as strict as the real one where
//! voxbridge's code could go wrong.
//!
//! - REST (`POST /v1/Account/{auth_id}/Call/`, `DELETE …/Call/{call_uuid}/`, `DELETE
//!   …/Request/{request_uuid}/`): Basic auth whose user is the path's Auth ID (401 otherwise),
//!   `from`, `to`, `answer_url` required and checked (400 with Plivo's `{"api_id", "error"}`),
//!   201 `{"api_id", "message": "call fired", "request_uuid"}`.
//! - The call then lives on its own task with a `CallUUID` of its own (not the request's):
//!   `ring_url` is posted (`CallStatus=ringing`), then, answered, `answer_url` is fetched with a
//!   V3-signed POST, its Plivo XML read (`<Stream>` URL and `extraHeaders`, or `<Hangup>`), and
//!   a simulated caller speaks Plivo's stream protocol (`caller_wire.rs`). When the stream
//!   ends, Plivo's trap is replayed: a **second socket** to the same URL with the same `start`,
//!   whose fate is recorded (`second_socket_refused`); then `hangup_url` gets the final status.
//! - Inbound calls: [`PlivoSim::simulate_inbound_call`] posts the signed answer-URL request a
//!   Plivo number would send and runs the answer.

pub mod call;
pub mod caller_wire;
mod rest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use super::caller::{CallerControl, CallerReport, CallerScript, RecordOptions};
use super::twilio::CallOutcome;

/// The account every fake starts with: `MA` and 18 uppercase letters or digits.
pub const DEFAULT_AUTH_ID: &str = "MAVOXBRIDGESIM000001";
/// Its Auth Token (40 letters and digits, as Plivo's are).
pub const DEFAULT_AUTH_TOKEN: &str = "VoxbridgeSimPlivoToken000000000000000001";

/// A webhook the fake sent.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    pub url: String,
    pub form: Vec<(String, String)>,
    /// The HTTP status answered (0: no answer).
    pub status: u16,
    /// The body answered.
    pub body: String,
}

impl SentWebhook {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
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

/// A call as the fake knows it.
#[derive(Debug, Clone, Default)]
pub struct SimCall {
    pub call_uuid: String,
    /// The `request_uuid` of the API request (empty for inbound calls).
    pub request_uuid: String,
    pub auth_id: String,
    pub from: String,
    pub to: String,
    pub inbound: bool,
    /// Plivo's words: `queued`, `ringing`, `in-progress`, `completed`, `busy`, …
    pub status: String,
    pub answer_url: String,
    pub hangup_url: Option<String>,
    pub ring_url: Option<String>,
    pub time_limit_secs: Option<u32>,
    /// The XML documents the answer URL gave.
    pub answers: Vec<String>,
    /// The `<Stream>` URL and `extraHeaders` of the answer.
    pub stream_url: Option<String>,
    pub extra_headers: Option<String>,
    pub reports: Vec<CallerReport>,
    /// Whether the server refused the second socket Plivo opens after the call (None: not
    /// tried).
    pub second_socket_refused: Option<bool>,
    pub hung_up_by_api: bool,
    pub finished: bool,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, String>,
    outcomes: HashMap<String, CallOutcome>,
    scripts: HashMap<String, CallerScript>,
    default_script: CallerScript,
    requests: Vec<RecordedRequest>,
    webhooks: Vec<SentWebhook>,
    calls: Vec<SimCall>,
    /// A live call's caller, for REST hang-ups.
    controls: HashMap<String, CallerControl>,
    /// Longest call when the request names no time limit.
    max_call_duration: Option<Duration>,
    /// A call still ringing, by request UUID: set to hang it up.
    cancels: HashMap<String, watch::Sender<bool>>,
}

struct Inner {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    http: reqwest::Client,
    record: RecordOptions,
}

/// The fake Plivo. Cheap to clone (every clone is the same fake).
#[derive(Clone)]
pub struct PlivoSim {
    inner: Arc<Inner>,
}

impl Default for PlivoSim {
    fn default() -> Self {
        Self::new(RecordOptions::default())
    }
}

impl std::fmt::Debug for PlivoSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlivoSim").finish_non_exhaustive()
    }
}

impl PlivoSim {
    /// A fake with the default account, every number answering at once.
    pub fn new(record: RecordOptions) -> Self {
        let (changed, _) = watch::channel(0);
        let sim = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed,
                http: reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
                record,
            }),
        };
        sim.add_account(DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN);
        sim
    }

    pub fn router(&self) -> Router {
        rest::routes().with_state(self.clone())
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

    pub fn add_account(&self, auth_id: &str, auth_token: &str) {
        self.state()
            .accounts
            .insert(auth_id.to_owned(), auth_token.to_owned());
    }

    fn token(&self, auth_id: &str) -> Option<String> {
        self.state().accounts.get(auth_id).cloned()
    }

    /// What happens when `number` (E.164) is called.
    pub fn set_outcome(&self, number: &str, outcome: CallOutcome) {
        self.state().outcomes.insert(number.to_owned(), outcome);
    }

    /// What the person at `number` does once connected.
    pub fn set_caller_script(&self, number: &str, script: CallerScript) {
        self.state().scripts.insert(number.to_owned(), script);
    }

    pub fn set_default_caller_script(&self, script: CallerScript) {
        self.state().default_script = script;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.state().webhooks.clone()
    }

    pub fn calls(&self) -> Vec<SimCall> {
        self.state().calls.clone()
    }

    /// A call by its CallUUID or request UUID.
    pub fn call(&self, id: &str) -> Option<SimCall> {
        self.state()
            .calls
            .iter()
            .find(|c| c.call_uuid == id || (!c.request_uuid.is_empty() && c.request_uuid == id))
            .cloned()
    }

    fn update_call(&self, call_uuid: &str, change: impl FnOnce(&mut SimCall)) {
        {
            let mut state = self.state();
            if let Some(call) = state.calls.iter_mut().find(|c| c.call_uuid == call_uuid) {
                change(call);
            }
        }
        self.notify();
    }

    /// Waits until `check` answers something (re-checked after every change), or `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&PlivoSim) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(found) = check(self) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return check(self),
            }
        }
    }

    /// Waits until the call (by CallUUID or request UUID) is over.
    pub async fn wait_for_call_end(&self, id: &str, timeout: Duration) -> Option<SimCall> {
        self.wait_for(timeout, |sim| sim.call(id).filter(|c| c.finished))
            .await
    }

    /// Rings one of our numbers: the answer URL (`voice_url`, our `/plivo/voice`) is posted,
    /// signed with the account's token, as Plivo does for a call to a number. Answers the new
    /// CallUUID; the call lives on its own task.
    pub fn simulate_inbound_call(
        &self,
        voice_url: &str,
        auth_id: &str,
        from: &str,
        to: &str,
        script: Option<CallerScript>,
    ) -> String {
        let call_uuid = uuid::Uuid::new_v4().to_string();
        let call = SimCall {
            call_uuid: call_uuid.clone(),
            auth_id: auth_id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            inbound: true,
            status: "ringing".into(),
            answer_url: voice_url.to_owned(),
            ..SimCall::default()
        };
        let script = script.unwrap_or_else(|| self.script_for(from));
        self.state().calls.push(call.clone());
        self.notify();
        tokio::spawn(call::run(self.clone(), call, script, None));
        call_uuid
    }

    /// The longest call when a request names no time limit (10 minutes by default).
    pub fn set_max_call_duration(&self, limit: Duration) {
        self.state().max_call_duration = Some(limit);
    }

    fn max_call_duration(&self) -> Duration {
        self.state()
            .max_call_duration
            .unwrap_or(Duration::from_secs(600))
    }

    fn script_for(&self, number: &str) -> CallerScript {
        let state = self.state();
        state
            .scripts
            .get(number)
            .cloned()
            .unwrap_or_else(|| state.default_script.clone())
    }

    fn outcome_for(&self, number: &str) -> CallOutcome {
        self.state()
            .outcomes
            .get(number)
            .copied()
            .unwrap_or_default()
    }
}
