//! A fake Exotel: the Connect API in its Voice AI form and the life of each call.
//!
//! - REST (`POST /v1/accounts/{sid}/calls/connect`, form): Basic auth with the account's API key
//!   and token (401 otherwise), `from`, `callerid`, `streamurl` (ws/wss, ≤ 600 characters),
//!   `streamtype=bidirectional` required, `statuscallbackevents[]` among `answered`, `terminal`,
//!   `ringing`, `timelimit` ≤ 14400, `customfield` ≤ 128 characters; errors as Exotel's
//!   `{"RestException": {"Status", "Code", "Message"}}`; 200 `{"call": {"sid", "status", …}}`.
//! - The call then lives on its own task: once answered, the `answered` status callback (when
//!   subscribed), a simulated caller on the stream URL speaking Exotel's protocol — the URL's
//!   userinfo sent as Basic auth on the upgrade and its query as `custom_parameters`, as Exotel
//!   does — and the `terminal` status callback.
//! - Inbound calls: [`ExotelSim::simulate_inbound_call`] requests the Voicebot applet's https
//!   URL (our `/exotel/voice?secret=…`) with the call's parameters, reads `{"url": …}` and
//!   connects the caller there.

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

/// The account every fake starts with.
pub const DEFAULT_ACCOUNT_SID: &str = "voxbridgesim1";
/// Its API key.
pub const DEFAULT_API_KEY: &str = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0";
/// Its API token.
pub const DEFAULT_API_TOKEN: &str = "f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9";

/// A webhook or applet request the fake sent.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    pub url: String,
    pub form: Vec<(String, String)>,
    pub status: u16,
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
    pub form: Vec<(String, String)>,
    pub authenticated: bool,
    pub status: u16,
}

impl RecordedRequest {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A call as the fake knows it.
#[derive(Debug, Clone, Default)]
pub struct SimCall {
    pub sid: String,
    pub account_sid: String,
    /// The number dialled (the API's `from`) or, inbound, the caller.
    pub from: String,
    pub to: String,
    pub inbound: bool,
    pub status: String,
    pub stream_url: String,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<String>,
    pub time_limit_secs: Option<u32>,
    pub custom_field: Option<String>,
    pub reports: Vec<CallerReport>,
    pub finished: bool,
}

#[derive(Default)]
struct State {
    /// sid → (api key, api token).
    accounts: HashMap<String, (String, String)>,
    outcomes: HashMap<String, CallOutcome>,
    scripts: HashMap<String, CallerScript>,
    default_script: CallerScript,
    requests: Vec<RecordedRequest>,
    webhooks: Vec<SentWebhook>,
    calls: Vec<SimCall>,
    controls: HashMap<String, CallerControl>,
    /// Longest call when the request names no time limit.
    max_call_duration: Option<Duration>,
}

struct Inner {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    http: reqwest::Client,
    record: RecordOptions,
}

/// The fake Exotel. Cheap to clone.
#[derive(Clone)]
pub struct ExotelSim {
    inner: Arc<Inner>,
}

impl Default for ExotelSim {
    fn default() -> Self {
        Self::new(RecordOptions::default())
    }
}

impl std::fmt::Debug for ExotelSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExotelSim").finish_non_exhaustive()
    }
}

impl ExotelSim {
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
        sim.add_account(DEFAULT_ACCOUNT_SID, DEFAULT_API_KEY, DEFAULT_API_TOKEN);
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

    pub fn add_account(&self, sid: &str, api_key: &str, api_token: &str) {
        self.state()
            .accounts
            .insert(sid.to_owned(), (api_key.to_owned(), api_token.to_owned()));
    }

    fn credentials(&self, sid: &str) -> Option<(String, String)> {
        self.state().accounts.get(sid).cloned()
    }

    pub fn set_outcome(&self, number: &str, outcome: CallOutcome) {
        self.state().outcomes.insert(number.to_owned(), outcome);
    }

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

    pub fn call(&self, sid: &str) -> Option<SimCall> {
        self.state().calls.iter().find(|c| c.sid == sid).cloned()
    }

    fn update_call(&self, sid: &str, change: impl FnOnce(&mut SimCall)) {
        {
            let mut state = self.state();
            if let Some(call) = state.calls.iter_mut().find(|c| c.sid == sid) {
                change(call);
            }
        }
        self.notify();
    }

    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&ExotelSim) -> Option<T>,
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

    pub async fn wait_for_call_end(&self, sid: &str, timeout: Duration) -> Option<SimCall> {
        self.wait_for(timeout, |sim| sim.call(sid).filter(|c| c.finished))
            .await
    }

    /// Rings one of our ExoPhones: the Voicebot applet's https URL (`applet_url`, our
    /// `/exotel/voice?secret=…`) is requested as Exotel requests it, and the caller connects
    /// to the stream URL it answers. Numbers are sent in Exotel's national form (`0…`).
    pub fn simulate_inbound_call(
        &self,
        applet_url: &str,
        account_sid: &str,
        from: &str,
        to: &str,
        script: Option<CallerScript>,
    ) -> String {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let call = SimCall {
            sid: sid.clone(),
            account_sid: account_sid.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            inbound: true,
            status: "ringing".into(),
            stream_url: applet_url.to_owned(),
            ..SimCall::default()
        };
        let script = script.unwrap_or_else(|| self.script_for(from));
        self.state().calls.push(call.clone());
        self.notify();
        tokio::spawn(call::run(self.clone(), call, script));
        sid
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
