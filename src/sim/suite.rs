//! Every fake provider on one loopback port, in-process: what `voxbridge sim` serves, what
//! `voxbridge serve --sim` starts beside the server, and what the load generator and the
//! benchmarks run against. The fakes' routes do not overlap, so one router holds them all and
//! one base URL names them all.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use serde_json::{Value, json};

use crate::config::Config;
use crate::sim::Latency;
use crate::sim::cartesia::{self, CartesiaFakeConfig, CartesiaFakeHandle};
use crate::sim::deepgram::{self, DeepgramFake, DeepgramFakeConfig};
use crate::sim::exotel::{self, ExotelSim};
use crate::sim::mcp::McpFake;
use crate::sim::openai::{self, OpenAiFake, OpenAiFakeHandle};
use crate::sim::plivo::{self, PlivoSim};
use crate::sim::sarvam_stt::{SarvamSttFake, SarvamSttFakeConfig};
use crate::sim::sarvam_tts::{self, SarvamTtsFakeConfig, SarvamTtsFakeHandle};
use crate::sim::stt_script::SttScript;
use crate::sim::telnyx::TelnyxSim;
use crate::sim::twilio::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSim, TwilioSimConfig};
use crate::sim::vonage::VonageSim;

/// One Sarvam key serves STT and TTS, as on the real service.
pub const SARVAM_KEY: &str = sarvam_tts::DEFAULT_API_KEY;

/// The Twilio REST base URL a server uses when nobody configured another one.
const REAL_TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// The fakes' timing. Zero everywhere by default; the load generator and the benchmarks use
/// [`SimOptions::reference`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimOptions {
    /// STT final result after the end of speech (Deepgram and Sarvam).
    pub stt_final_ms: u64,
    /// STT interim results and VAD events after the audio that caused them.
    pub stt_interim_ms: u64,
    /// LLM first token after the request.
    pub llm_first_token_ms: u64,
    /// LLM time between streamed chunks.
    pub llm_per_chunk_ms: u64,
    /// TTS first audio after the first text of a context (Cartesia and Sarvam).
    pub tts_first_byte_ms: u64,
    /// TTS time between audio chunks.
    pub tts_per_chunk_ms: u64,
    /// How much faster than real time the Sarvam TTS fake synthesises after its first byte (0:
    /// as fast as the socket takes it). The Cartesia fake always streams as fast as it can.
    pub sarvam_tts_times_real_time: u32,
}

impl SimOptions {
    /// The fixed delays our published figures are measured with: STT final 100 ms after speech
    /// end, LLM first token 200 ms, TTS first byte 150 ms (Sarvam then synthesising at 4× real
    /// time).
    pub fn reference() -> Self {
        Self {
            stt_final_ms: 100,
            stt_interim_ms: 0,
            llm_first_token_ms: 200,
            llm_per_chunk_ms: 0,
            tts_first_byte_ms: 150,
            tts_per_chunk_ms: 0,
            sarvam_tts_times_real_time: 4,
        }
    }

    /// What a reply waits for in the fakes alone, from the end of the caller's speech to the
    /// first audio byte: the part of voice-to-voice latency that is not ours (endpointing aside).
    pub fn provider_delay_ms(&self) -> u64 {
        self.stt_final_ms + self.llm_first_token_ms + self.tts_first_byte_ms
    }
}

/// The running fakes and the handles tests use to inspect them.
pub struct SimSuite {
    /// `http://127.0.0.1:<port>`: the base URL of every fake.
    pub base_url: String,
    pub options: SimOptions,
    pub deepgram: DeepgramFake,
    pub cartesia: CartesiaFakeHandle,
    pub openai: OpenAiFakeHandle,
    pub sarvam_stt: SarvamSttFake,
    pub sarvam_tts: SarvamTtsFakeHandle,
    pub twilio: TwilioSim,
    pub plivo: PlivoSim,
    pub exotel: ExotelSim,
    pub telnyx: TelnyxSim,
    pub vonage: VonageSim,
    /// An MCP server at `{base_url}/mcp`.
    pub mcp: McpFake,
    task: tokio::task::JoinHandle<()>,
}

impl SimSuite {
    /// Starts all fakes on `addr` (port 0: any free port), the STT fakes with their built-in
    /// scripts.
    pub async fn start(addr: SocketAddr, options: SimOptions) -> std::io::Result<Self> {
        Self::start_scripted(addr, options, None).await
    }

    /// Starts all fakes; `stt_script`, when given, is what callers "say" to both STT fakes.
    pub async fn start_scripted(
        addr: SocketAddr,
        options: SimOptions,
        stt_script: Option<SttScript>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let stt_latency = Latency::from_millis(options.stt_final_ms, options.stt_interim_ms);
        let mut deepgram_config = DeepgramFakeConfig {
            latency: stt_latency,
            ..DeepgramFakeConfig::default()
        };
        let mut sarvam_stt_config = SarvamSttFakeConfig {
            api_keys: vec![SARVAM_KEY.to_owned()],
            latency: stt_latency,
            ..SarvamSttFakeConfig::default()
        };
        if let Some(script) = stt_script {
            deepgram_config.script = script.clone();
            sarvam_stt_config.script = script;
        }
        let deepgram = DeepgramFake::new(deepgram_config);
        let sarvam_stt = SarvamSttFake::new(sarvam_stt_config);
        let tts_latency = Latency::from_millis(options.tts_first_byte_ms, options.tts_per_chunk_ms);
        let (cartesia_router, cartesia) = cartesia::router(CartesiaFakeConfig {
            latency: tts_latency,
            ..CartesiaFakeConfig::default()
        });
        let (sarvam_tts_router, sarvam_tts) = sarvam_tts::router(SarvamTtsFakeConfig {
            api_keys: vec![SARVAM_KEY.to_owned()],
            latency: tts_latency,
            times_real_time: options.sarvam_tts_times_real_time,
            ..SarvamTtsFakeConfig::default()
        });
        let (openai_router, openai) = OpenAiFake::new()
            .latency(Latency::from_millis(
                options.llm_first_token_ms,
                options.llm_per_chunk_ms,
            ))
            .build();
        let twilio = TwilioSim::new(TwilioSimConfig::default());
        let plivo = PlivoSim::default();
        let exotel = ExotelSim::default();
        let telnyx = TelnyxSim::default();
        let vonage = VonageSim::default();
        let mcp = McpFake::new();
        let app = Router::new()
            .merge(mcp.router())
            .merge(deepgram.router())
            .merge(sarvam_stt.router())
            .merge(sarvam_tts_router)
            .merge(cartesia_router)
            .merge(openai_router)
            .merge(twilio.router())
            .merge(plivo.router())
            .merge(exotel.router())
            .merge(telnyx.router())
            .merge(vonage.router());
        // Served as the server serves: each connection on one of the core threads, so the fakes
        // cost the machine what they must, not a work-stealing runtime's wake-ups on top.
        let task = tokio::spawn(crate::server::connections::serve(
            listener,
            app,
            crate::config::HttpLimits::default(),
            std::future::pending(),
            Duration::ZERO,
        ));
        Ok(Self {
            base_url,
            options,
            deepgram,
            cartesia,
            openai,
            sarvam_stt,
            sarvam_tts,
            twilio,
            plivo,
            exotel,
            telnyx,
            vonage,
            mcp,
            task,
        })
    }

    /// Points the server's providers at the fakes: every provider whose key is empty, or all of
    /// them with `all` (see [`use_fakes_at`]).
    pub fn configure(&self, config: &mut Config, all: bool) {
        use_fakes_at(config, &self.base_url, all);
    }

    /// What `voxbridge sim` prints: each fake's base URL and the credentials it accepts.
    pub fn describe(&self) -> Value {
        let url = &self.base_url;
        let o = &self.options;
        json!({
            "base_url": url,
            "deepgram": {"base_url": url, "websocket": format!("{}{}", ws_url(url), deepgram::LISTEN_PATH), "api_key": deepgram::DEFAULT_API_KEY},
            "sarvam": {"base_url": url, "api_key": SARVAM_KEY},
            "cartesia": {"base_url": url, "api_key": cartesia::DEFAULT_API_KEY},
            "openai": {"base_url": format!("{url}/v1"), "api_key": openai::DEFAULT_API_KEY},
            "twilio": {"base_url": url, "account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN},
            "plivo": {"base_url": url, "auth_id": plivo::DEFAULT_AUTH_ID, "auth_token": plivo::DEFAULT_AUTH_TOKEN},
            "exotel": {"base_url": url, "account_sid": exotel::DEFAULT_ACCOUNT_SID, "api_key": exotel::DEFAULT_API_KEY, "api_token": exotel::DEFAULT_API_TOKEN},
            "telnyx": {"base_url": url, "trunk_account_sid": crate::sim::telnyx::DEFAULT_CONNECTION_ID,
                       "trunk_auth_token": crate::sim::telnyx::DEFAULT_API_KEY,
                       "trunk_options": {"public_key": self.telnyx.public_key()}},
            "vonage": {"base_url": url, "trunk_account_sid": crate::sim::vonage::DEFAULT_APPLICATION_ID,
                       "trunk_auth_token": crate::sim::vonage::default_private_key(),
                       "trunk_options": {"signature_secret": crate::sim::vonage::DEFAULT_SIGNATURE_SECRET,
                                         "api_key": crate::sim::vonage::DEFAULT_API_KEY}},
            "mcp": {"url": format!("{url}/mcp"), "tools": ["get_order_status", "add"]},
            "latency_ms": {
                "stt_final": o.stt_final_ms, "stt_interim": o.stt_interim_ms,
                "llm_first_token": o.llm_first_token_ms, "llm_per_chunk": o.llm_per_chunk_ms,
                "tts_first_byte": o.tts_first_byte_ms, "tts_per_chunk": o.tts_per_chunk_ms,
                "sarvam_tts_times_real_time": o.sarvam_tts_times_real_time,
            },
        })
    }
}

/// Points a server's providers at fakes served at `url` (by a [`SimSuite`], here or in a
/// `voxbridge sim` process): every provider whose key is empty, or all of them with `all`.
/// Twilio keys live in trunks, so Twilio's REST API is faked unless its base URL was configured
/// to something else than the real one.
pub fn use_fakes_at(config: &mut Config, url: &str, all: bool) {
    let url = url.trim_end_matches('/');
    if all || config.deepgram.api_key.is_empty() {
        config.deepgram.base_url = url.to_owned();
        config.deepgram.api_key = deepgram::DEFAULT_API_KEY.to_owned();
    }
    if all || config.sarvam.api_key.is_empty() {
        config.sarvam.base_url = url.to_owned();
        config.sarvam.api_key = SARVAM_KEY.to_owned();
    }
    if all || config.cartesia.api_key.is_empty() {
        config.cartesia.base_url = url.to_owned();
        config.cartesia.api_key = cartesia::DEFAULT_API_KEY.to_owned();
    }
    if all || config.llm.api_key.is_empty() {
        config.llm.base_url = format!("{url}/v1");
        config.llm.api_key = openai::DEFAULT_API_KEY.to_owned();
    }
    if all || config.twilio.base_url.trim_end_matches('/') == REAL_TWILIO_BASE_URL {
        config.twilio.base_url = url.to_owned();
    }
    // The other providers' keys live in trunks too: a provider not pointed elsewhere is faked.
    for provider in crate::telephony::TrunkProvider::ALL {
        if provider.as_str() != "twilio"
            && (all || !config.telephony.contains_key(provider.as_str()))
        {
            config.telephony.insert(
                provider.as_str().to_owned(),
                crate::config::TelephonyEndpoint {
                    base_url: url.to_owned(),
                },
            );
        }
    }
}

impl Drop for SimSuite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ws_url(http: &str) -> String {
    http.replacen("http", "ws", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configure_fills_only_unconfigured_providers() {
        let suite = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
            .await
            .unwrap();
        let mut config = Config::default();
        config.deepgram.api_key = "real-deepgram".to_owned();
        config.deepgram.base_url = "https://api.deepgram.com".to_owned();
        suite.configure(&mut config, false);
        assert_eq!(config.deepgram.api_key, "real-deepgram");
        assert_eq!(config.deepgram.base_url, "https://api.deepgram.com");
        assert_eq!(config.cartesia.base_url, suite.base_url);
        assert_eq!(config.cartesia.api_key, cartesia::DEFAULT_API_KEY);
        assert_eq!(config.llm.base_url, format!("{}/v1", suite.base_url));
        assert_eq!(config.sarvam.api_key, SARVAM_KEY);
        assert_eq!(config.twilio.base_url, suite.base_url);

        let mut config = Config::default();
        config.twilio.base_url = "https://twilio.internal.example".to_owned();
        config.llm.api_key = "sk-real".to_owned();
        suite.configure(&mut config, true);
        assert_eq!(config.twilio.base_url, suite.base_url);
        assert_eq!(config.llm.api_key, openai::DEFAULT_API_KEY);
    }

    #[tokio::test]
    async fn every_fake_answers_on_the_one_port() {
        let suite = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::reference())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        // Each fake rejects a request without credentials the way its service does, which
        // proves its routes are mounted (an unmounted route would be a plain 404).
        let chat = http
            .post(format!("{}/v1/chat/completions", suite.base_url))
            .json(&json!({"model": "x", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(chat.status(), 401);
        let bytes = http
            .post(format!("{}/tts/bytes", suite.base_url))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(bytes.status(), 401);
        let twilio = http
            .post(format!(
                "{}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json",
                suite.base_url
            ))
            .form(&[("To", "+15550001111")])
            .send()
            .await
            .unwrap();
        assert_eq!(twilio.status(), 401);
        let described = suite.describe();
        assert_eq!(described["latency_ms"]["llm_first_token"], 200);
        assert_eq!(
            described["deepgram"]["websocket"],
            format!("{}/v1/listen", suite.base_url.replacen("http", "ws", 1))
        );
        assert_eq!(SimOptions::reference().provider_delay_ms(), 450);
    }
}
