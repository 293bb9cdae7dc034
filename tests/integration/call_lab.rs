//! A laboratory for whole calls: the fake providers (Deepgram, Cartesia, OpenAI-compatible,
//! Twilio) on one loopback port, a voxbridge server pointed at them, an assistant with a trunk
//! and a phone number, and a webhook receiver that records what it gets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::config::Config;
use voxbridge::sim::caller::{CallerAudio, CallerScript};
use voxbridge::sim::stt_script::SttScript;
use voxbridge::sim::suite::{SimOptions, SimSuite};
use voxbridge::sim::twilio::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, InboundCall};

use crate::common::{Backend, TestServer};

pub const OUR_NUMBER: &str = "+15550001111";
pub const CALLER_NUMBER: &str = "+15559998888";
pub const GREETING: &str = "Hello! Thanks for calling Acme. How can I help?";

/// A webhook receiver that answers 200 (or the statuses it is told to) and keeps every request.
#[derive(Clone, Default)]
pub struct WebhookSink {
    pub received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    pub fail_first: Arc<Mutex<u32>>,
}

impl WebhookSink {
    async fn serve(&self) -> String {
        let sink = self.clone();
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    sink.received.lock().unwrap().push((headers, body));
                    let mut fail = sink.fail_first.lock().unwrap();
                    if *fail > 0 {
                        *fail -= 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Everything a call test needs.
pub struct CallLab {
    pub server: TestServer,
    /// The fakes; `lab.twilio`, `lab.deepgram`, ... reach them through `Deref`.
    pub sim: SimSuite,
    pub webhooks: WebhookSink,
    pub assistant_id: String,
    pub trunk_id: String,
}

impl std::ops::Deref for CallLab {
    type Target = SimSuite;

    fn deref(&self) -> &SimSuite {
        &self.sim
    }
}

/// What the lab's assistant looks like; tests adjust it before the lab starts.
pub struct LabOptions {
    pub utterances: Vec<&'static str>,
    pub assistant: Value,
    pub webhook_fail_first: u32,
    pub max_concurrent_calls: u32,
    /// Last say on the server's configuration.
    pub configure: Box<dyn FnOnce(&mut Config) + Send>,
    /// The fakes' delays (none by default).
    pub delays: SimOptions,
    /// SQLite by default; on PostgreSQL the lab is `None` outside CI when it cannot be reached.
    pub backend: Backend,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            utterances: vec![
                "Hi, I'd like to book a table for two.",
                "Yes, tomorrow at seven please.",
                "Thank you, goodbye.",
            ],
            assistant: json!({
                "assistant_name": "Acme Reception",
                "assistant_description": "Books tables",
                "assistant_prompt": "You are the receptionist of Acme. Keep answers short.",
                "assistant_tts_model": "cartesia",
                "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
                "assistant_start_instruction": GREETING,
            }),
            webhook_fail_first: 0,
            max_concurrent_calls: 100,
            configure: Box::new(|_| {}),
            delays: SimOptions::default(),
            backend: Backend::Sqlite,
        }
    }
}

impl CallLab {
    pub async fn start(options: LabOptions) -> Self {
        Self::try_start(options)
            .await
            .expect("the lab's database is reachable")
    }

    /// Like [`start`](Self::start), answering `None` (having said why) when the lab's
    /// PostgreSQL is not reachable outside CI.
    pub async fn try_start(options: LabOptions) -> Option<Self> {
        let script = SttScript::new(options.utterances.iter().map(|s| s.to_string()).collect());
        let sim =
            SimSuite::start_scripted(([127, 0, 0, 1], 0).into(), options.delays, Some(script))
                .await
                .expect("the fakes start");
        let webhooks = WebhookSink::default();
        *webhooks.fail_first.lock().unwrap() = options.webhook_fail_first;
        let hook_url = webhooks.serve().await;
        let max_calls = options.max_concurrent_calls;
        let server = TestServer::start_with(options.backend, |config| {
            sim.configure(config, true);
            config.egress.allow_loopback = true;
            config.webhook.retry_base_ms = 100;
            config.max_concurrent_calls_per_owner = max_calls;
            (options.configure)(config);
        })
        .await?;

        let mut assistant = options.assistant;
        assistant["assistant_end_call_url"] = json!(hook_url);
        let (status, reply) = server.post("/assistant/create", assistant).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let assistant_id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
        let (status, reply) = server
            .post(
                "/trunk/create",
                json!({"trunk_name": "Lab", "trunk_provider": "twilio", "trunk_account_sid": DEFAULT_ACCOUNT_SID,
                       "trunk_auth_token": DEFAULT_AUTH_TOKEN, "trunk_default_caller_number": OUR_NUMBER}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let trunk_id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
        let (status, reply) = server
            .post("/phone_number/create", json!({"phone_number": OUR_NUMBER, "assistant_id": assistant_id, "trunk_id": trunk_id}))
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        sim.twilio.add_number(DEFAULT_ACCOUNT_SID, OUR_NUMBER);
        Some(Self {
            server,
            sim,
            webhooks,
            assistant_id,
            trunk_id,
        })
    }

    /// Rings our number with a caller following `script`; answers Twilio's CallSid.
    pub fn call_in(&self, script: CallerScript) -> String {
        self.twilio
            .simulate_inbound_call(InboundCall {
                voice_url: format!("{}/twilio/voice", self.server.base),
                account_sid: DEFAULT_ACCOUNT_SID.to_owned(),
                from: CALLER_NUMBER.to_owned(),
                to: OUR_NUMBER.to_owned(),
                script: Some(script),
                status_callback: None,
                status_callback_events: vec![],
            })
            .expect("inbound call starts")
    }

    /// The stored call with this CallSid, once it has ended (its webhook queued).
    pub async fn finished_call(&self, call_sid: &str) -> Value {
        let Some(sim) = self
            .twilio
            .wait_for_call_end(call_sid, Duration::from_secs(90))
            .await
        else {
            // Say where the call stood: which script step the caller was on, and what the
            // server had recorded so far.
            let (_, list) = self.server.get("/call/list").await;
            let stored = match list["data"]["calls"][0]["call_id"].as_str() {
                Some(id) => self.server.get(&format!("/call/details/{id}")).await.1,
                None => Value::Null,
            };
            panic!(
                "the call did not end within 90 s\nsim call: {:#?}\nstored: {stored:#}",
                self.twilio
                    .call(call_sid)
                    .map(|c| (c.status, c.streams.len(), c.errors))
            );
        };
        assert!(
            sim.rejected.is_none(),
            "the call was rejected: {:?}",
            sim.rejected
        );
        self.stored_call_once_ended().await
    }

    /// The lab's one call as the store has it, once it has ended (waits up to 30 s).
    pub async fn stored_call_once_ended(&self) -> Value {
        for _ in 0..300 {
            let (_, list) = self.server.get("/call/list").await;
            if let Some(call) = list["data"]["calls"].as_array().and_then(|c| c.first())
                && call["ended_at"].is_string()
            {
                let id = call["call_id"].as_str().unwrap();
                let (status, details) = self.server.get(&format!("/call/details/{id}")).await;
                assert_eq!(status, StatusCode::OK);
                return details["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the call never ended in the store");
    }

    /// The call's recording at `url` (fetched with the lab owner's key): its format and its
    /// samples as `(caller, agent)` pairs.
    pub async fn recording(&self, url: &str) -> (hound::WavSpec, Vec<[i16; 2]>) {
        let wav = reqwest::Client::new()
            .get(url)
            .bearer_auth(&self.server.key)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let pairs = samples.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        (reader.spec(), pairs)
    }

    /// Stops the lab's server and starts another on its database and the same fakes,
    /// configured as the lab's was and then as `adjust` says.
    pub async fn restart(self, adjust: impl FnOnce(&mut Config)) -> Self {
        let Self {
            server,
            sim,
            webhooks,
            assistant_id,
            trunk_id,
        } = self;
        let server = server
            .restart_with(|config| {
                sim.configure(config, true);
                config.egress.allow_loopback = true;
                config.webhook.retry_base_ms = 100;
                adjust(config);
            })
            .await;
        Self {
            server,
            sim,
            webhooks,
            assistant_id,
            trunk_id,
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// `(role, text)` of each line of a stored call's transcript.
pub fn transcript(call: &Value) -> Vec<(String, String)> {
    call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().to_owned(),
                t["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What the caller said, line by line, as a stored call's transcript has it.
pub fn user_turns(call: &Value) -> Vec<String> {
    transcript(call)
        .into_iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, text)| text)
        .collect()
}

/// A committed caller clip.
pub fn clip(name: &str) -> CallerAudio {
    CallerAudio::from_wav_file(format!(
        "{}/audio/caller/{name}.wav",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("caller clip")
}

/// Waits for the agent to speak and then to fall silent.
pub fn after_agent(script: CallerScript) -> CallerScript {
    script
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait_for_agent_silence(Duration::from_millis(800), Duration::from_secs(30))
}
