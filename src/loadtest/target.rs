//! The server under test, and what it needs before calls can ring: an API key, an assistant, a
//! trunk of the chosen provider and a phone number routed to the assistant, all made over its REST API.
//!
//! Three ways to have a server: spawn `voxbridge serve` as a child process (the default: its
//! CPU and memory are then the server's alone), run one in this process (benchmarks), or use
//! one already running at a loopback URL.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::server::Server;
use crate::sim::suite::use_fakes_at;
use crate::telephony::TrunkProvider;

use super::LoadTestError;

/// The TTS the load test's assistant speaks with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TtsChoice {
    /// Cartesia over its WebSocket, a fixed voice id.
    #[default]
    Cartesia,
    /// Sarvam Bulbul over its WebSocket: seed 002's `anushka`, `en-IN`.
    Sarvam,
}

/// The STT the load test's assistant hears with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SttChoice {
    /// Deepgram: the server asks for 300 ms endpointing.
    #[default]
    Deepgram,
    /// Sarvam streaming STT (`en-IN`): its own VAD ends the utterance (high sensitivity).
    Sarvam,
}

impl TtsChoice {
    /// The assistant's `assistant_tts_model` and `assistant_tts_config`.
    fn assistant_fields(self) -> (Value, Value) {
        match self {
            TtsChoice::Cartesia => (
                json!("cartesia"),
                json!({"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}),
            ),
            TtsChoice::Sarvam => (
                json!("sarvam"),
                json!({"speaker": "anushka", "target_language_code": "en-IN"}),
            ),
        }
    }
}

impl SttChoice {
    /// Silence after the caller's last voiced audio at which the fake STT ends the utterance:
    /// Deepgram's endpointing as the server asks it, or the Sarvam fake's VAD in the
    /// high-sensitivity mode the server asks for with short endpointing.
    pub fn endpointing_ms(self) -> u64 {
        match self {
            SttChoice::Deepgram => u64::from(crate::call::providers::ENDPOINTING_MS),
            SttChoice::Sarvam => crate::sim::sarvam_stt::END_SILENCE_HIGH_SENSITIVITY_MS,
        }
    }
}

impl std::str::FromStr for TtsChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cartesia" => Ok(TtsChoice::Cartesia),
            "sarvam" => Ok(TtsChoice::Sarvam),
            other => Err(format!("unknown TTS {other:?}: cartesia or sarvam")),
        }
    }
}

impl std::str::FromStr for SttChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deepgram" => Ok(SttChoice::Deepgram),
            "sarvam" => Ok(SttChoice::Sarvam),
            other => Err(format!("unknown STT {other:?}: deepgram or sarvam")),
        }
    }
}

/// Where the server under test comes from.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// Spawn this `voxbridge` executable (`serve --sim-url …`) on a fresh SQLite database.
    Spawn { exe: PathBuf },
    /// Run the server in this process (its CPU and memory cannot be told from the generator's).
    InProcess,
    /// Servers already running at loopback `urls` (several nodes on one PostgreSQL database,
    /// or one), configured to use the fakes the load test points at; calls are spread over
    /// them in turn, and `pids` (those on this machine) let the load test read their CPU and
    /// memory, summed.
    External {
        urls: Vec<String>,
        api_key: String,
        pids: Vec<u32>,
    },
}

/// A running server under test.
pub struct Target {
    /// The first node: where the run is provisioned.
    pub base_url: String,
    /// Every node calls are spread over (the first is `base_url`).
    pub node_urls: Vec<String>,
    pub api_key: String,
    /// Its processes, when they are not this one.
    pub pids: Vec<u32>,
    /// Folder of the spawned server's database and log.
    pub work_dir: Option<PathBuf>,
    keep: Keep,
}

enum Keep {
    Nothing,
    Child(Child),
    InProcess(Option<oneshot::Sender<()>>),
}

impl Drop for Target {
    fn drop(&mut self) {
        match &mut self.keep {
            Keep::Nothing => {}
            Keep::Child(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Keep::InProcess(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// How long a spawned server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Target {
    /// Starts (or reaches) the server; its providers are the fakes at `sim_url`.
    pub async fn start(
        spec: &ServerSpec,
        sim_url: &str,
        max_calls: u32,
    ) -> Result<Self, LoadTestError> {
        match spec {
            ServerSpec::Spawn { exe } => spawn(exe, sim_url, max_calls).await,
            ServerSpec::InProcess => in_process(sim_url, max_calls).await,
            ServerSpec::External {
                urls,
                api_key,
                pids,
            } => {
                let node_urls: Vec<String> = urls
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect();
                let base_url = node_urls.first().cloned().ok_or_else(|| {
                    LoadTestError::Invalid("at least one --server is needed".to_owned())
                })?;
                Ok(Self {
                    base_url,
                    node_urls,
                    api_key: api_key.clone(),
                    pids: pids.clone(),
                    work_dir: None,
                    keep: Keep::Nothing,
                })
            }
        }
    }

    /// Creates the assistant (speaking with `tts`, hearing with `stt`), trunk and number the
    /// calls ring; answers the number.
    pub async fn provision(
        &self,
        http: &reqwest::Client,
        tts: TtsChoice,
        stt: SttChoice,
        provider: TrunkProvider,
    ) -> Result<String, LoadTestError> {
        let number = format!("+1555{:07}", rand_u32() % 10_000_000);
        let (tts_model, tts_config) = tts.assistant_fields();
        let mut assistant = json!({
            "assistant_name": "Load test",
            "assistant_description": "Answers simulated callers",
            "assistant_prompt": "You are the receptionist of Acme Bistro. Keep answers short.",
            "assistant_tts_model": tts_model,
            "assistant_tts_config": tts_config,
            "assistant_start_instruction": GREETING,
            // A caller silent after its last turn stays on the line until the run's duration
            // (a soak's calls last ten minutes): the agent's silence prompt and hang-up are not
            // what a load test measures.
            "assistant_silence_timeout_secs": 600,
        });
        if stt == SttChoice::Sarvam {
            assistant["assistant_stt_config"] = json!({"provider": "sarvam", "language": "en-IN"});
        }
        let assistant = self.post(http, "/assistant/create", assistant).await?;
        let assistant_id = field(&assistant, "assistant_id")?;
        let trunk = self
            .post(
                http,
                "/trunk/create",
                super::driver::Driver::trunk(provider, &number),
            )
            .await?;
        let trunk_id = field(&trunk, "trunk_id")?;
        self.post(
            http,
            "/phone_number/create",
            json!({"phone_number": number, "assistant_id": assistant_id, "trunk_id": trunk_id}),
        )
        .await?;
        Ok(number)
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> Result<Value, LoadTestError> {
        let url = format!("{}{path}", self.base_url);
        let response = http
            .post(&url)
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| LoadTestError::Setup(format!("POST {path}: {e}")))?;
        let status = response.status();
        let reply: Value = response
            .json()
            .await
            .map_err(|e| LoadTestError::Setup(format!("POST {path}: {e}")))?;
        if !status.is_success() {
            return Err(LoadTestError::Setup(format!(
                "POST {path}: {status} {reply}"
            )));
        }
        Ok(reply)
    }
}

/// What the agent says first; long enough (≈ 6 s of speech) for the caller to talk over it.
const GREETING: &str = "Hello! Thanks for calling Acme Bistro. I can book a table, tell you \
                        our opening hours, or take a message for the manager. How can I help?";

fn field(reply: &Value, name: &str) -> Result<String, LoadTestError> {
    reply["data"][name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| LoadTestError::Setup(format!("no {name} in {reply}")))
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    u32::from_le_bytes(bytes)
}

async fn spawn(exe: &PathBuf, sim_url: &str, max_calls: u32) -> Result<Target, LoadTestError> {
    let dir = std::env::temp_dir().join(format!("voxbridge-loadtest-{:08x}", rand_u32()));
    std::fs::create_dir_all(&dir).map_err(|e| LoadTestError::Setup(e.to_string()))?;
    let log = std::fs::File::create(dir.join("server.log"))
        .map_err(|e| LoadTestError::Setup(e.to_string()))?;
    let mut child = Command::new(exe)
        .args(["serve", "--sim-url", sim_url])
        // Only what we set: a developer's provider keys or config file must not leak in.
        .env_clear()
        .env("VOXBRIDGE_CONFIG", dir.join("none.toml"))
        .env("VOXBRIDGE_BIND", "127.0.0.1:0")
        .env(
            "VOXBRIDGE_DATABASE_URL",
            format!("sqlite:{}", dir.join("loadtest.db").display()),
        )
        .env("VOXBRIDGE_LOG_LEVEL", "warn")
        .env("VOXBRIDGE_BOOTSTRAP_EMAIL", "loadtest@localhost")
        .env(
            "VOXBRIDGE_MAX_CONCURRENT_CALLS_PER_OWNER",
            max_calls.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| LoadTestError::Setup(format!("cannot start {}: {e}", exe.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = oneshot::channel();
    // The first key and the address come on stdout; the rest of stdout is drained so the
    // server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut key = None;
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = line.trim();
            if line.starts_with("vbx_") {
                key = Some(line.to_owned());
            } else if let Some(url) = line.strip_prefix("voxbridge listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((url.to_owned(), key.take()));
            }
        }
    });
    let pid = child.id();
    let started = tokio::time::timeout(START_TIMEOUT, rx).await;
    let (base_url, api_key) = match started {
        Ok(Ok((url, Some(key)))) => (url, key),
        _ => {
            let _ = child.kill();
            return Err(LoadTestError::Setup(format!(
                "the server did not start; see {}",
                dir.join("server.log").display()
            )));
        }
    };
    Ok(Target {
        node_urls: vec![base_url.clone()],
        base_url,
        api_key,
        pids: vec![pid],
        work_dir: Some(dir),
        keep: Keep::Child(child),
    })
}

async fn in_process(sim_url: &str, max_calls: u32) -> Result<Target, LoadTestError> {
    let dir = std::env::temp_dir().join(format!("voxbridge-loadtest-{:08x}", rand_u32()));
    std::fs::create_dir_all(&dir).map_err(|e| LoadTestError::Setup(e.to_string()))?;
    let mut config = Config {
        bind: ([127, 0, 0, 1], 0).into(),
        database_url: format!("sqlite:{}", dir.join("loadtest.db").display()),
        max_concurrent_calls_per_owner: max_calls,
        ..Config::default()
    };
    use_fakes_at(&mut config, sim_url, true);
    let server = Server::bind(config)
        .await
        .map_err(|e| LoadTestError::Setup(e.to_string()))?;
    let key = server
        .store()
        .create_api_key("loadtest@localhost")
        .await
        .map_err(|e| LoadTestError::Setup(e.to_string()))?;
    let base_url = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run_until(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Target {
        node_urls: vec![base_url.clone()],
        base_url,
        api_key: key.plaintext,
        pids: Vec::new(),
        work_dir: Some(dir),
        keep: Keep::InProcess(Some(stop)),
    })
}
