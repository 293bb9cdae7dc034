//! A fake Twilio: the Calls REST API and the life of each call, faithful enough that voxbridge's
//! telephony code cannot tell it from the real one on this machine, and strict enough that a
//! request the real Twilio would refuse is refused here with Twilio's own error code.
//!
//! - REST (`/2010-04-01/Accounts/{AccountSid}/Calls.json`, `…/Calls/{CallSid}.json`): Basic auth
//!   against the configured accounts (401/20003), form validation (21201/21211 `To`, 21213/21212
//!   `From`, exactly one of `Url`/`Twiml`/`ApplicationSid`, 21626 for a `StatusCallbackEvent`
//!   Twilio would not understand — including a comma-joined list — and 21234 for an
//!   answering-machine detection value it would not take), 201 with a Call resource.
//! - Then, on its own task, the call lives: signed status callbacks `initiated` → `ringing` →
//!   `in-progress` → `completed` (or `busy`/`no-answer`/`failed`, scripted per number); on
//!   answer its TwiML runs, and `<Connect><Stream>` starts a simulated caller
//!   ([`super::caller`]) against the stream URL. A REST hang-up stops the caller and
//!   completes the call; a TwiML redirect (a `<Dial>` transfer) ends the stream and runs the new
//!   document.
//! - Answering-machine detection (`MachineDetection`, `AsyncAmd`): the number's [`Callee`] — a
//!   person, an answering machine (greeting, beep, silence) or a fax — decides the verdict and
//!   when it comes; with `AsyncAmd=true` it is posted, signed, to `AsyncAmdStatusCallback`
//!   (see `amd.rs`).
//! - Inbound calls: [`TwilioSim::simulate_inbound_call`] posts the signed voice webhook a phone
//!   number would send, runs the TwiML answer and connects the caller.
//!
//! Everything received and sent is recorded on the handle for test assertions.

mod amd;
mod call;
pub mod caller_wire;
mod rest;
mod twiml_reader;
mod webhook;

pub use amd::{Callee, MachineDetection};
pub use twiml_reader::{DialTarget, DialVerb, StreamVerb, TwimlParseError, Verb, parse_twiml};
pub use webhook::{SentWebhook, WebhookKind};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::Latency;
use super::caller::{CallerReport, CallerScript, RecordOptions, ScriptError, ScriptSpec};
use crate::telephony::{CallStatus, StatusCallbackEvent, new_sid};
use crate::validation::is_e164;

/// The account every fake starts with, so `voxbridge sim` works without a fixture.
pub const DEFAULT_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// Its Auth Token.
pub const DEFAULT_AUTH_TOKEN: &str = "00000000000000000000000000000001";

/// How the fake behaves overall.
#[derive(Debug, Clone)]
pub struct TwilioSimConfig {
    /// `first_byte` delays every REST answer.
    pub latency: Latency,
    /// What the simulated callers keep of the server's audio.
    pub record: RecordOptions,
    /// Refuse `ws://` stream URLs as the real Twilio does (31922). Off by default: local runs
    /// have no TLS.
    pub require_wss: bool,
    /// Longest call when the request gives no `TimeLimit`.
    pub max_call_duration: Duration,
}

impl Default for TwilioSimConfig {
    fn default() -> Self {
        Self {
            latency: Latency::NONE,
            record: RecordOptions::default(),
            require_wss: false,
            max_call_duration: Duration::from_secs(600),
        }
    }
}

/// What happens when a number is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Picked up after ringing this long.
    Answer { after: Duration },
    /// Busy after ringing this long.
    Busy { after: Duration },
    /// Nobody picks up: rings this long (at most the request's `Timeout`), then `no-answer`.
    NoAnswer { after: Duration },
    /// The call cannot be connected at all.
    Failed,
}

impl Default for CallOutcome {
    fn default() -> Self {
        CallOutcome::Answer {
            after: Duration::ZERO,
        }
    }
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Placed over REST (`outbound-api`).
    OutboundApi,
    /// Dialled to one of the account's numbers (`inbound`).
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::OutboundApi => "outbound-api",
            Direction::Inbound => "inbound",
        }
    }
}

/// A Twilio debugger error raised during a call (what the console's error log would show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub code: u32,
    pub message: String,
}

/// A media stream the call opened.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub url: String,
    pub stream_sid: String,
    pub parameters: Vec<(String, String)>,
}

/// A call as the fake knows it.
#[derive(Debug, Clone)]
pub struct SimCall {
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: String,
    pub direction: Direction,
    pub status: CallStatus,
    /// Inline TwiML of the create request.
    pub twiml: Option<String>,
    /// `Url` of the create request.
    pub url: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<StatusCallbackEvent>,
    pub timeout_secs: Option<u32>,
    pub time_limit_secs: Option<u32>,
    /// `MachineDetection` of the create request.
    pub machine_detection: Option<MachineDetection>,
    /// `AsyncAmd=true`: the verdict is posted to `async_amd_callback`.
    pub async_amd: bool,
    pub async_amd_callback: Option<String>,
    pub machine_detection_timeout_secs: Option<u32>,
    /// The detection's verdict (`human`, `machine_end_beep`, …), once given.
    pub answered_by: Option<String>,
    pub date_created: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// Seconds from answer to end.
    pub duration_secs: Option<u64>,
    /// Streams opened, in order.
    pub streams: Vec<StreamRecord>,
    /// What each simulated caller saw, in stream order.
    pub caller_reports: Vec<CallerReport>,
    /// TwiML documents the call was redirected to over REST.
    pub redirects: Vec<String>,
    pub dials: Vec<DialVerb>,
    /// `<Say>` texts, in order.
    pub said: Vec<String>,
    /// `<Reject reason>` when the call was refused.
    pub rejected: Option<String>,
    /// Verbs the fake skipped.
    pub skipped_verbs: Vec<String>,
    pub errors: Vec<SimError>,
    /// Hung up over REST.
    pub hung_up_by_api: bool,
    /// A hang-up is under way; further updates answer 404.
    pub(crate) ending: bool,
    /// Everything is over, the final callback included.
    pub finished: bool,
}

impl SimCall {
    fn new(sid: String, account_sid: &str, to: &str, from: &str, direction: Direction) -> Self {
        Self {
            sid,
            account_sid: account_sid.to_owned(),
            to: to.to_owned(),
            from: from.to_owned(),
            direction,
            status: CallStatus::Queued,
            twiml: None,
            url: None,
            status_callback: None,
            status_callback_events: Vec::new(),
            timeout_secs: None,
            time_limit_secs: None,
            machine_detection: None,
            async_amd: false,
            async_amd_callback: None,
            machine_detection_timeout_secs: None,
            answered_by: None,
            date_created: rfc2822_now(),
            start_time: None,
            end_time: None,
            duration_secs: None,
            streams: Vec::new(),
            caller_reports: Vec::new(),
            redirects: Vec::new(),
            dials: Vec::new(),
            said: Vec::new(),
            rejected: None,
            skipped_verbs: Vec::new(),
            errors: Vec::new(),
            hung_up_by_api: false,
            ending: false,
            finished: false,
        }
    }
}

/// One request the REST API received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The decoded form, repeated keys kept in order.
    pub form: Vec<(String, String)>,
    /// Whether Basic auth succeeded.
    pub authenticated: bool,
    /// The HTTP status answered.
    pub status: u16,
    /// The JSON answered.
    pub response: serde_json::Value,
}

impl RecordedRequest {
    /// Every value of a form field.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An inbound call to simulate.
#[derive(Debug, Clone)]
pub struct InboundCall {
    /// The voice URL of the called number (voxbridge's `/twilio/voice`).
    pub voice_url: String,
    pub account_sid: String,
    /// The caller's number.
    pub from: String,
    /// The called number (one of the account's).
    pub to: String,
    /// What the caller does once connected (default: the script set for `from`, else the
    /// default script).
    pub script: Option<CallerScript>,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<StatusCallbackEvent>,
}

/// The fake could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum TwilioSimError {
    #[error("no account {0} is configured")]
    UnknownAccount(String),
    #[error("cannot read fixture {path}: {message}")]
    Fixture { path: String, message: String },
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// A change to a live call, sent by the REST update handler to the call's task.
#[derive(Debug)]
pub(crate) enum Interrupt {
    HangUp,
    Cancel,
    Redirect(String),
    RedirectUrl(String),
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, String>,
    numbers: HashMap<String, Vec<String>>,
    outcomes: HashMap<String, CallOutcome>,
    default_outcome: CallOutcome,
    scripts: HashMap<String, CallerScript>,
    default_script: CallerScript,
    callees: HashMap<String, Callee>,
    requests: Vec<RecordedRequest>,
    webhooks: Vec<SentWebhook>,
    calls: Vec<SimCall>,
    call_index: HashMap<String, usize>,
    controls: HashMap<String, mpsc::Sender<Interrupt>>,
}

struct Inner {
    config: TwilioSimConfig,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    http: reqwest::Client,
}

/// The fake Twilio: serves its router, runs its calls, and lets tests configure and inspect
/// it. Cheap to clone (every clone is the same fake).
#[derive(Clone)]
pub struct TwilioSim {
    inner: Arc<Inner>,
}

impl Default for TwilioSim {
    fn default() -> Self {
        Self::new(TwilioSimConfig::default())
    }
}

impl std::fmt::Debug for TwilioSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSim").finish_non_exhaustive()
    }
}

/// `fixtures/sim/twilio.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    accounts: HashMap<String, String>,
    #[serde(default)]
    numbers: HashMap<String, Vec<String>>,
    #[serde(default)]
    outcomes: HashMap<String, OutcomeSpec>,
    #[serde(default)]
    caller_script: Option<ScriptSpec>,
    /// `{e164: "machine" | "fax" | "person"}`.
    #[serde(default)]
    callees: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeSpec {
    outcome: String,
    #[serde(default)]
    ring_ms: u64,
}

impl TwilioSim {
    /// A fake with the default account ([`DEFAULT_ACCOUNT_SID`]) and every number answering.
    pub fn new(config: TwilioSimConfig) -> Self {
        let (changed, _) = watch::channel(0);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let sim = Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                changed,
                http,
            }),
        };
        sim.add_account(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN);
        sim
    }

    /// A fake configured from a JSON fixture: `{"accounts": {sid: token}, "numbers": {sid:
    /// [e164]}, "outcomes": {e164: {"outcome": "busy", "ring_ms": 500}}, "caller_script":
    /// {...}}` (WAV paths relative to the fixture).
    pub fn from_fixture(
        path: impl AsRef<Path>,
        config: TwilioSimConfig,
    ) -> Result<Self, TwilioSimError> {
        let path = path.as_ref();
        let fail = |message: String| TwilioSimError::Fixture {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let fixture: Fixture = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let sim = Self::new(config);
        for (sid, token) in &fixture.accounts {
            sim.add_account(sid, token);
        }
        for (sid, numbers) in &fixture.numbers {
            for number in numbers {
                sim.add_number(sid, number);
            }
        }
        for (number, spec) in &fixture.outcomes {
            let after = Duration::from_millis(spec.ring_ms);
            let outcome = match spec.outcome.as_str() {
                "answer" => CallOutcome::Answer { after },
                "busy" => CallOutcome::Busy { after },
                "no-answer" => CallOutcome::NoAnswer { after },
                "failed" => CallOutcome::Failed,
                other => return Err(fail(format!("unknown outcome {other:?} for {number}"))),
            };
            sim.set_outcome(number, outcome);
        }
        for (number, kind) in &fixture.callees {
            let callee = match kind.as_str() {
                "person" => Callee::Person,
                "machine" => Callee::machine(),
                "fax" => Callee::Fax,
                other => return Err(fail(format!("unknown callee {other:?} for {number}"))),
            };
            sim.set_callee(number, callee);
        }
        if let Some(spec) = &fixture.caller_script {
            let base = path.parent().unwrap_or(Path::new("."));
            sim.set_default_caller_script(CallerScript::from_spec(spec, base)?);
        }
        Ok(sim)
    }

    /// The REST routes, for `voxbridge sim` to merge with the other fakes.
    pub fn router(&self) -> Router {
        rest::routes().with_state(self.clone())
    }

    /// Serves the fake on an ephemeral loopback port; answers its base URL
    /// (`http://127.0.0.1:port`, what `twilio.base_url` should be).
    pub async fn serve_on_loopback(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake Twilio stopped");
            }
        });
        Ok(format!("http://{addr}"))
    }

    /// Accepts `account_sid` / `auth_token` for Basic auth and signs its webhooks with the token.
    pub fn add_account(&self, account_sid: &str, auth_token: &str) {
        self.update(|s| {
            s.accounts
                .insert(account_sid.to_owned(), auth_token.to_owned());
        });
    }

    /// Gives the account a phone number. Once an account has numbers, outbound `From` must be
    /// one of them (Twilio's 21210).
    pub fn add_number(&self, account_sid: &str, number: &str) {
        self.update(|s| {
            s.numbers
                .entry(account_sid.to_owned())
                .or_default()
                .push(number.to_owned());
        });
    }

    /// What happens when `number` is called.
    pub fn set_outcome(&self, number: &str, outcome: CallOutcome) {
        self.update(|s| {
            s.outcomes.insert(number.to_owned(), outcome);
        });
    }

    /// What happens when a number without its own outcome is called.
    pub fn set_default_outcome(&self, outcome: CallOutcome) {
        self.update(|s| s.default_outcome = outcome);
    }

    /// What the person at `number` does once the stream connects (the callee of an outbound
    /// call; the caller of an inbound one).
    pub fn set_caller_script(&self, number: &str, script: CallerScript) {
        self.update(|s| {
            s.scripts.insert(number.to_owned(), script);
        });
    }

    /// What answers `number` (a person unless told otherwise). A machine or a fax plays its own
    /// script instead of the number's caller script.
    pub fn set_callee(&self, number: &str, callee: Callee) {
        self.update(|s| {
            s.callees.insert(number.to_owned(), callee);
        });
    }

    /// The script of numbers without their own.
    pub fn set_default_caller_script(&self, script: CallerScript) {
        self.update(|s| s.default_script = script);
    }

    /// Every REST request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.read(|s| s.requests.clone())
    }

    /// Every webhook sent (status callbacks, voice webhooks), in order.
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.read(|s| s.webhooks.clone())
    }

    /// The status callbacks of one call, in order.
    pub fn status_callbacks(&self, call_sid: &str) -> Vec<SentWebhook> {
        self.read(|s| {
            s.webhooks
                .iter()
                .filter(|w| w.kind == WebhookKind::Status && w.call_sid == call_sid)
                .cloned()
                .collect()
        })
    }

    /// The answering-machine detection callbacks of one call, in order.
    pub fn amd_callbacks(&self, call_sid: &str) -> Vec<SentWebhook> {
        self.read(|s| {
            s.webhooks
                .iter()
                .filter(|w| w.kind == WebhookKind::Amd && w.call_sid == call_sid)
                .cloned()
                .collect()
        })
    }

    /// Every call, in creation order.
    pub fn calls(&self) -> Vec<SimCall> {
        self.read(|s| s.calls.clone())
    }

    pub fn call(&self, sid: &str) -> Option<SimCall> {
        self.read(|s| s.call_index.get(sid).map(|&i| s.calls[i].clone()))
    }

    /// Waits until `check` answers something (re-checked after every change), or `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&TwilioSim) -> Option<T>,
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

    /// Waits until the call is over (final status callback sent) and answers it.
    pub async fn wait_for_call_end(&self, sid: &str, timeout: Duration) -> Option<SimCall> {
        self.wait_for(timeout, |sim| sim.call(sid).filter(|c| c.finished))
            .await
    }

    /// Simulates a call to one of the account's numbers: the signed voice webhook goes to
    /// `voice_url`, its TwiML answer runs. Answers the new Call SID at once; the call lives on
    /// its own task (see [`TwilioSim::wait_for_call_end`]).
    pub fn simulate_inbound_call(&self, inbound: InboundCall) -> Result<String, TwilioSimError> {
        let token = self
            .read(|s| s.accounts.get(&inbound.account_sid).cloned())
            .ok_or_else(|| TwilioSimError::UnknownAccount(inbound.account_sid.clone()))?;
        let sid = new_sid("CA");
        let script = inbound
            .script
            .clone()
            .unwrap_or_else(|| self.script_for(&inbound.from));
        let mut call = SimCall::new(
            sid.clone(),
            &inbound.account_sid,
            &inbound.to,
            &inbound.from,
            Direction::Inbound,
        );
        call.status = CallStatus::Ringing;
        call.url = Some(inbound.voice_url.clone());
        call.status_callback = inbound.status_callback.clone();
        call.status_callback_events = inbound.status_callback_events.clone();
        let interrupts = self.insert_call(call);
        let setup = call::CallSetup {
            sid: sid.clone(),
            auth_token: token,
            script,
            callee: Callee::Person,
            outcome: CallOutcome::default(),
            url_method_get: false,
            status_callback_get: false,
            amd_callback_get: false,
        };
        tokio::spawn(call::run(self.clone(), setup, interrupts));
        Ok(sid)
    }

    fn config(&self) -> &TwilioSimConfig {
        &self.inner.config
    }

    fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one test thread must not make every later assertion panic too.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the state and wakes every [`TwilioSim::wait_for`].
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.lock());
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
        out
    }

    fn update_call(&self, sid: &str, f: impl FnOnce(&mut SimCall)) {
        self.update(|s| {
            if let Some(&i) = s.call_index.get(sid) {
                f(&mut s.calls[i]);
            }
        });
    }

    fn insert_call(&self, call: SimCall) -> mpsc::Receiver<Interrupt> {
        let (tx, rx) = mpsc::channel(8);
        self.update(|s| {
            s.controls.insert(call.sid.clone(), tx);
            s.call_index.insert(call.sid.clone(), s.calls.len());
            s.calls.push(call);
        });
        rx
    }

    fn script_for(&self, number: &str) -> CallerScript {
        self.read(|s| {
            s.scripts
                .get(number)
                .cloned()
                .unwrap_or_else(|| s.default_script.clone())
        })
    }

    fn callee_for(&self, number: &str) -> Callee {
        self.read(|s| s.callees.get(number).cloned().unwrap_or_default())
    }

    fn outcome_for(&self, number: &str) -> CallOutcome {
        self.read(|s| s.outcomes.get(number).copied().unwrap_or(s.default_outcome))
    }

    fn token_of(&self, account_sid: &str) -> Option<String> {
        self.read(|s| s.accounts.get(account_sid).cloned())
    }

    /// Whether `from` may be used as caller ID by the account (any number, until the account
    /// has numbers of its own).
    fn owns_number(&self, account_sid: &str, from: &str) -> bool {
        self.read(|s| {
            s.numbers
                .get(account_sid)
                .is_none_or(|numbers| numbers.iter().any(|n| n == from))
        })
    }
}

/// A `To`/`From` Twilio accepts: an E.164 number, a `client:` identity or a SIP URI.
fn is_dialable(value: &str) -> bool {
    is_e164(value)
        || value
            .strip_prefix("client:")
            .is_some_and(|id| !id.is_empty())
        || value.starts_with("sip:")
}

/// Now, as Twilio writes dates (RFC 2822, UTC).
fn rfc2822_now() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
