//! Cartesia Sonic over its WebSocket (`/tts/websocket`): the low-latency way to speak a turn
//! while the LLM is still writing it.
//!
//! One socket per call, one *context* per generation: every text piece is sent with
//! `continue: true` and the turn is closed with `continue: false` (an empty transcript when the
//! last piece was not known to be last). Every input of a context repeats the same fields, which
//! the request builder guarantees by construction. Barge-in sends `cancel` and forgets the
//! context, so late chunks for it are dropped here. Completion is the provider's `done`; error
//! frames (current `title/message/error_code` and old `error` shapes) fail that generation.
//! Audio is asked for in exactly the transport's format, so it passes through untouched.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tracing::{debug, warn};

use super::sample_carry::SampleCarry;
use super::socket_session::{self, Actions, Retired, TtsWire};
use super::ws;
use super::{
    TextToSpeech, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession, TtsTimeouts, WordTiming,
    resolve_api_key, resolve_model,
};
use crate::assistant::TtsConfig;
use crate::audio::{AudioFormat, Encoding};
use crate::config::CartesiaConfig;
use crate::generation::Generation;
use futures_util::future::BoxFuture;

/// The API version voxbridge is written against (what Pipecat pins; listed in the docs).
pub const DEFAULT_VERSION: &str = "2026-03-01";
const DEFAULT_MODEL: &str = "sonic-3";
const DEFAULT_LANGUAGE: &str = "en";
/// Sample rates Cartesia produces.
const SAMPLE_RATES: [u32; 6] = [8000, 16_000, 22_050, 24_000, 44_100, 48_000];
/// Largest message accepted: a chunk of about a second of 48 kHz PCM16 (96 KB) is 128 KB of
/// base64 plus JSON; chunks are normally far smaller, this only bounds a misbehaving server.
const MAX_MESSAGE: usize = 512 * 1024;

/// Cartesia over WebSocket.
#[derive(Debug, Clone)]
pub struct CartesiaTts {
    endpoint: TtsEndpoint,
    version: String,
    timeouts: TtsTimeouts,
    max_buffer_delay_ms: u32,
}

impl CartesiaTts {
    /// A client for `endpoint`, sending `Cartesia-Version: version` (empty: [`DEFAULT_VERSION`]).
    pub fn new(endpoint: TtsEndpoint, version: impl Into<String>) -> Self {
        let version = version.into();
        Self {
            endpoint,
            version: if version.trim().is_empty() {
                DEFAULT_VERSION.to_owned()
            } else {
                version
            },
            timeouts: TtsTimeouts::default(),
            max_buffer_delay_ms: 0,
        }
    }

    /// A client from the server's `[cartesia]` section.
    pub fn from_config(config: &CartesiaConfig) -> Self {
        Self::new(
            TtsEndpoint {
                base_url: config.base_url.clone(),
                api_key: config.api_key.clone(),
                model: config.model.clone(),
            },
            config.version.clone(),
        )
    }

    pub fn with_timeouts(mut self, timeouts: TtsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How long Cartesia may hold text back waiting for more (`max_buffer_delay_ms`). The call
    /// session already sends speakable phrases, so the default is 0: generate at once.
    pub fn with_max_buffer_delay_ms(mut self, ms: u32) -> Self {
        self.max_buffer_delay_ms = ms.min(5000);
        self
    }
}

impl TextToSpeech for CartesiaTts {
    fn connect(&self, params: TtsParams) -> BoxFuture<'static, Result<TtsSession, TtsError>> {
        let wire =
            CartesiaSetup::new(&self.endpoint, &self.version, &params).map(|setup| CartesiaWire {
                setup,
                max_buffer_delay_ms: self.max_buffer_delay_ms,
                turn_idle: self.timeouts.turn_idle,
                contexts: Vec::with_capacity(2),
                retired: Retired::default(),
            });
        socket_session::start(wire, &params, self.timeouts)
    }
}

/// What a call's Cartesia requests have in common (shared with [`super::CartesiaBytes`]).
#[derive(Debug, Clone)]
pub(crate) struct CartesiaSetup {
    pub(crate) base_url: String,
    pub(crate) api_key: String,
    pub(crate) version: String,
    pub(crate) model_id: String,
    pub(crate) voice_id: String,
    pub(crate) language: String,
    /// Cartesia's name of the output encoding (`pcm_mulaw`, `pcm_s16le`, ...).
    pub(crate) encoding: &'static str,
    pub(crate) output: AudioFormat,
}

impl CartesiaSetup {
    pub(crate) fn new(
        endpoint: &TtsEndpoint,
        version: &str,
        params: &TtsParams,
    ) -> Result<Self, TtsError> {
        let TtsConfig::Cartesia(voice) = &params.voice else {
            return Err(TtsError::Misconfigured(
                "the Cartesia client was given a voice of another provider".to_owned(),
            ));
        };
        let output = params.output;
        if !SAMPLE_RATES.contains(&output.sample_rate) {
            return Err(TtsError::UnsupportedFormat(output));
        }
        let encoding = match output.encoding {
            Encoding::Mulaw => "pcm_mulaw",
            Encoding::Alaw => "pcm_alaw",
            Encoding::Pcm16 => "pcm_s16le",
        };
        Ok(Self {
            base_url: endpoint.base_url.clone(),
            api_key: resolve_api_key(voice.api_key.as_deref(), endpoint)?,
            version: version.to_owned(),
            model_id: resolve_model(voice.model_id.as_deref(), endpoint, DEFAULT_MODEL),
            voice_id: voice.voice_id.clone(),
            language: voice
                .language
                .clone()
                .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned()),
            encoding,
            output,
        })
    }

    pub(crate) fn auth_header(&self) -> String {
        format!("Bearer {}", self.api_key)
    }

    fn websocket_request(&self) -> Result<tungstenite::handshake::client::Request, TtsError> {
        let url = ws::ws_url(&self.base_url, "/tts/websocket")?;
        ws::request(
            &url,
            &[
                ("authorization", &self.auth_header()),
                ("cartesia-version", &self.version),
            ],
        )
    }
}

/// A generation request on the socket. Only `transcript` and `continue` differ between the
/// inputs of one context; everything else comes from the same [`CartesiaSetup`].
#[derive(Serialize)]
struct GenerationRequest<'a> {
    model_id: &'a str,
    transcript: &'a str,
    voice: VoiceSpecifier<'a>,
    language: &'a str,
    context_id: &'a str,
    output_format: OutputFormat<'a>,
    add_timestamps: bool,
    #[serde(rename = "continue")]
    more_to_come: bool,
    max_buffer_delay_ms: u32,
}

#[derive(Serialize)]
pub(crate) struct VoiceSpecifier<'a> {
    pub(crate) mode: &'static str,
    pub(crate) id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct OutputFormat<'a> {
    pub(crate) container: &'static str,
    pub(crate) encoding: &'a str,
    pub(crate) sample_rate: u32,
}

#[derive(Serialize)]
struct CancelRequest<'a> {
    context_id: &'a str,
    cancel: bool,
}

/// Any message from the server; unknown fields are ignored, and the error fields of both the
/// current and the old API versions are read.
#[derive(Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    context_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(default)]
    word_timestamps: Option<WordTimestamps>,
    #[serde(default)]
    status_code: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl ServerMessage<'_> {
    fn error(&self) -> TtsError {
        let mut text = String::new();
        for part in [&self.title, &self.message, &self.error_code]
            .into_iter()
            .flatten()
        {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(part);
        }
        match &self.error {
            Some(serde_json::Value::String(s)) if text.is_empty() => text.push_str(s),
            Some(other) if text.is_empty() => text.push_str(&other.to_string()),
            _ => {}
        }
        // Old API versions sent only a message; those were request errors.
        let status = self
            .status_code
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(400);
        ws::status_error(status, text)
    }
}

#[derive(Deserialize)]
struct WordTimestamps {
    #[serde(default)]
    words: Vec<String>,
    #[serde(default)]
    start: Vec<f32>,
    #[serde(default)]
    end: Vec<f32>,
}

impl WordTimestamps {
    fn into_words(self) -> Vec<WordTiming> {
        self.words
            .into_iter()
            .zip(self.start)
            .zip(self.end)
            .map(|((word, start), end)| WordTiming { word, start, end })
            .collect()
    }
}

/// One generation's context on the socket.
struct Context {
    generation: Generation,
    id: String,
    /// `continue: false` was sent: only audio, timestamps and `done` remain.
    closed: bool,
    carry: SampleCarry,
    /// Last time the provider said something about this context (or it was closed).
    progress: Instant,
}

/// Cartesia's protocol for the shared socket session: contexts by id, one per generation.
struct CartesiaWire {
    setup: CartesiaSetup,
    max_buffer_delay_ms: u32,
    turn_idle: Duration,
    /// Contexts in flight: usually one, two while a new turn starts as the last one finishes.
    contexts: Vec<Context>,
    retired: Retired,
}

impl TtsWire for CartesiaWire {
    const PROVIDER: &'static str = "cartesia";
    const MAX_MESSAGE: usize = MAX_MESSAGE;

    fn request(&self) -> Result<tungstenite::handshake::client::Request, TtsError> {
        self.setup.websocket_request()
    }

    fn speak(&mut self, generation: Generation, text: String, last: bool, out: &mut Actions) {
        let index = match self
            .contexts
            .iter()
            .position(|c| c.generation == generation)
        {
            Some(index) => index,
            None => {
                if self.retired.contains(generation) {
                    debug!(%generation, "cartesia: text for a finished or cancelled turn dropped");
                    return;
                }
                // A newer turn means the older ones get no more text: close them so they finish
                // (and stop counting against the account's concurrency).
                self.close_older_than(generation, out);
                self.contexts.push(Context {
                    generation,
                    id: uuid::Uuid::new_v4().to_string(),
                    closed: false,
                    carry: SampleCarry::new(self.setup.output.encoding),
                    progress: Instant::now(),
                });
                self.contexts.len() - 1
            }
        };
        if self.contexts[index].closed {
            warn!(%generation, "cartesia: text after the last piece of a turn dropped");
            return;
        }
        if text.is_empty() && !last {
            return;
        }
        let context = &mut self.contexts[index];
        if last {
            context.closed = true;
            context.progress = Instant::now();
        }
        out.send(generation_request(
            &self.setup,
            self.max_buffer_delay_ms,
            &context.id,
            &text,
            !last,
        ));
        if last {
            self.retired.retire(generation);
        }
    }

    fn cancel(&mut self, generation: Generation, out: &mut Actions) {
        self.retired.retire(generation);
        let Some(index) = self
            .contexts
            .iter()
            .position(|c| c.generation == generation)
        else {
            return;
        };
        // Forgetting the context here is what drops its late chunks.
        let context = self.contexts.remove(index);
        out.send(cancel_request(&context.id));
    }

    fn message(&mut self, text: &str, out: &mut Actions) {
        let message: ServerMessage<'_> = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                warn!(error = %e, "cartesia: malformed message skipped");
                return;
            }
        };
        let index = message
            .context_id
            .as_deref()
            .and_then(|id| self.contexts.iter().position(|c| c.id == id));
        let Some(index) = index else {
            if message.kind == "error" && message.context_id.is_none() {
                self.connection_error(message.error(), out);
            } else {
                debug!(kind = %message.kind, "cartesia: message for no live context dropped");
            }
            return;
        };
        self.contexts[index].progress = Instant::now();
        let generation = self.contexts[index].generation;
        match &*message.kind {
            "chunk" => {
                let Some(data) = message.data.as_deref() else {
                    warn!("cartesia: chunk without data skipped");
                    return;
                };
                match self.contexts[index].carry.decode_base64(data.as_bytes()) {
                    Ok(audio) if audio.is_empty() => {}
                    Ok(audio) => out.audio(generation, audio),
                    Err(e) => warn!(error = %e, "cartesia: chunk with bad base64 skipped"),
                }
            }
            "timestamps" => {
                if let Some(timestamps) = message.word_timestamps {
                    let words = timestamps.into_words();
                    if !words.is_empty() {
                        out.event(TtsEvent::Words { generation, words });
                    }
                }
            }
            "done" => {
                self.contexts.remove(index);
                self.retired.retire(generation);
                out.done(generation);
            }
            "error" => {
                let error = message.error();
                self.contexts.remove(index);
                self.retired.retire(generation);
                out.failed(Some(generation), error);
            }
            _ => {} // flush_done, phoneme_timestamps: nothing the call needs.
        }
    }

    fn busy(&self) -> bool {
        !self.contexts.is_empty()
    }

    /// A closed turn (all its text sent) must keep progressing.
    fn turn_deadline(&self) -> Option<Instant> {
        self.contexts
            .iter()
            .filter(|c| c.closed)
            .map(|c| c.progress + self.turn_idle)
            .min()
    }

    fn turn_overdue(&mut self, now: Instant, out: &mut Actions) {
        let Some(index) = self
            .contexts
            .iter()
            .position(|c| c.closed && c.progress + self.turn_idle <= now)
        else {
            return;
        };
        // The link is alive but this turn stopped progressing: give up on it.
        let context = self.contexts.remove(index);
        self.retired.retire(context.generation);
        out.failed(
            Some(context.generation),
            TtsError::Stalled(format!("no progress on the turn for {:?}", self.turn_idle)),
        );
        out.send(cancel_request(&context.id));
    }

    fn link_lost(&mut self) -> Vec<Generation> {
        let lost: Vec<Generation> = self.contexts.drain(..).map(|c| c.generation).collect();
        for &generation in &lost {
            self.retired.retire(generation);
        }
        lost
    }
}

impl CartesiaWire {
    fn close_older_than(&mut self, generation: Generation, out: &mut Actions) {
        for context in self
            .contexts
            .iter_mut()
            .filter(|c| c.generation < generation && !c.closed)
        {
            context.closed = true;
            context.progress = Instant::now();
            out.send(generation_request(
                &self.setup,
                self.max_buffer_delay_ms,
                &context.id,
                "",
                false,
            ));
        }
    }

    /// An error frame about no context: every turn in flight is affected.
    fn connection_error(&mut self, error: TtsError, out: &mut Actions) {
        if self.contexts.is_empty() {
            return out.failed(None, error);
        }
        for context in std::mem::take(&mut self.contexts) {
            self.retired.retire(context.generation);
            out.failed(Some(context.generation), error.clone());
        }
    }
}

fn cancel_request(context_id: &str) -> String {
    serde_json::to_string(&CancelRequest {
        context_id,
        cancel: true,
    })
    .unwrap_or_default()
}

fn generation_request(
    setup: &CartesiaSetup,
    max_buffer_delay_ms: u32,
    context_id: &str,
    transcript: &str,
    more_to_come: bool,
) -> String {
    let request = GenerationRequest {
        model_id: &setup.model_id,
        transcript,
        voice: VoiceSpecifier {
            mode: "id",
            id: &setup.voice_id,
        },
        language: &setup.language,
        context_id,
        output_format: OutputFormat {
            container: "raw",
            encoding: setup.encoding,
            sample_rate: setup.output.sample_rate,
        },
        add_timestamps: true,
        more_to_come,
        max_buffer_delay_ms,
    };
    // Plain strings and numbers: serialisation cannot fail.
    serde_json::to_string(&request).unwrap_or_default()
}

/// Feeds server text messages to the wire as a live socket's session does, with two turns in
/// flight whose contexts are named `ctx-1` (closed) and `ctx-2` (open), so that a message can
/// reach one; answers how many actions they produced. The entry point of the fuzz target
/// (`fuzz/`).
#[doc(hidden)]
pub fn read_server_messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> usize {
    let params = TtsParams {
        voice: TtsConfig::Cartesia(crate::assistant::CartesiaVoice {
            voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
            api_key: None,
            model_id: None,
            language: None,
        }),
        output: AudioFormat::PCM16_16K,
        playout: None,
    };
    let endpoint = TtsEndpoint {
        base_url: "https://api.cartesia.ai".into(),
        api_key: "key".into(),
        model: String::new(),
    };
    let setup = CartesiaSetup::new(&endpoint, DEFAULT_VERSION, &params).expect("a valid setup");
    let mut wire = CartesiaWire {
        setup,
        max_buffer_delay_ms: 0,
        turn_idle: Duration::from_secs(5),
        contexts: Vec::new(),
        retired: Retired::default(),
    };
    let mut out = Actions::default();
    wire.speak(Generation(1), "Hello there.".into(), true, &mut out);
    wire.speak(Generation(2), "How can I".into(), false, &mut out);
    for (n, context) in wire.contexts.iter_mut().enumerate() {
        context.id = format!("ctx-{}", n + 1);
    }
    let mut actions = out.take().len();
    for text in messages {
        wire.message(text, &mut out);
        actions += out.take().len();
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::CartesiaVoice;
    use crate::tts::socket_session::Action;
    use serde_json::Value;

    fn setup() -> CartesiaSetup {
        let params = TtsParams {
            voice: TtsConfig::Cartesia(CartesiaVoice {
                voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
                api_key: None,
                model_id: None,
                language: None,
            }),
            output: AudioFormat::MULAW_8K,
            playout: None,
        };
        let endpoint = TtsEndpoint {
            base_url: "https://api.cartesia.ai".into(),
            api_key: "server-key".into(),
            model: String::new(),
        };
        CartesiaSetup::new(&endpoint, DEFAULT_VERSION, &params).unwrap()
    }

    #[test]
    fn inputs_of_a_context_differ_only_in_transcript_and_continue() {
        let setup = setup();
        let a: Value =
            serde_json::from_str(&generation_request(&setup, 0, "c1", "Hello, ", true)).unwrap();
        let b: Value =
            serde_json::from_str(&generation_request(&setup, 0, "c1", "", false)).unwrap();
        assert_eq!(a["continue"], true);
        assert_eq!(b["continue"], false);
        assert_eq!(a["output_format"]["encoding"], "pcm_mulaw");
        assert_eq!(a["output_format"]["container"], "raw");
        assert_eq!(a["model_id"], "sonic-3");
        assert_eq!(a["language"], "en");
        let strip = |mut v: Value| {
            let o = v.as_object_mut().unwrap();
            o.remove("transcript");
            o.remove("continue");
            v
        };
        assert_eq!(strip(a), strip(b));
    }

    fn wire() -> CartesiaWire {
        CartesiaWire {
            setup: setup(),
            max_buffer_delay_ms: 0,
            turn_idle: Duration::from_secs(5),
            contexts: Vec::new(),
            retired: Retired::default(),
        }
    }

    fn sent(actions: Vec<Action>) -> Vec<Value> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Send(text) => Some(serde_json::from_str(&text).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_turn_closes_the_older_one_and_a_cancel_forgets_its_context() {
        let mut wire = wire();
        let mut out = Actions::default();
        wire.speak(Generation(1), "Hello there, ".into(), false, &mut out);
        wire.speak(Generation(2), "New turn.".into(), false, &mut out);
        let messages = sent(out.take());
        assert_eq!(messages.len(), 3);
        let (first, second) = (&messages[0]["context_id"], &messages[2]["context_id"]);
        assert_ne!(first, second);
        // The older context is closed with an empty transcript before the new one opens.
        assert_eq!(messages[1]["context_id"], *first);
        assert_eq!(messages[1]["continue"], false);
        assert_eq!(messages[1]["transcript"], "");

        let second_id = second.as_str().unwrap().to_owned();
        wire.cancel(Generation(2), &mut out);
        let messages = sent(out.take());
        assert_eq!(messages[0]["cancel"], true);
        assert_eq!(messages[0]["context_id"], second_id.as_str());
        // A late chunk of the cancelled context, and more text for it, are dropped.
        let chunk = format!(r#"{{"type":"chunk","context_id":"{second_id}","data":"AAAA"}}"#);
        wire.message(&chunk, &mut out);
        wire.speak(Generation(2), "more".into(), true, &mut out);
        assert!(out.take().is_empty());
    }

    #[test]
    fn a_closed_turn_without_progress_fails_and_is_cancelled() {
        let mut wire = wire();
        let mut out = Actions::default();
        wire.speak(Generation(1), "Hi.".into(), true, &mut out);
        out.take();
        let deadline = wire.turn_deadline().expect("a closed turn owes progress");
        wire.turn_overdue(deadline, &mut out);
        let actions = out.take();
        assert!(matches!(
            &actions[0],
            Action::Event(TtsEvent::Failed {
                generation: Some(Generation(1)),
                error: TtsError::Stalled(_)
            })
        ));
        assert_eq!(sent(actions)[0]["cancel"], true);
        assert!(!wire.busy());
        assert!(wire.link_lost().is_empty());
    }

    #[test]
    fn both_error_shapes_become_typed_errors() {
        let current: ServerMessage<'_> = serde_json::from_str(
            r#"{"type":"error","context_id":"c","done":true,"status_code":429,"title":"Too many","message":"concurrency","error_code":"rate_limited"}"#,
        )
        .unwrap();
        assert!(matches!(current.error(), TtsError::RateLimited { .. }));
        let old: ServerMessage<'_> =
            serde_json::from_str(r#"{"type":"error","context_id":"c","error":"voice not found"}"#)
                .unwrap();
        assert_eq!(
            old.error(),
            TtsError::Rejected {
                status: 400,
                message: "voice not found".into()
            }
        );
    }

    #[test]
    fn unsupported_rates_are_refused_up_front() {
        let params = TtsParams {
            voice: TtsConfig::Cartesia(CartesiaVoice {
                voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
                ..Default::default()
            }),
            output: AudioFormat::new(Encoding::Pcm16, 11_025),
            playout: None,
        };
        let endpoint = TtsEndpoint {
            base_url: "https://api.cartesia.ai".into(),
            api_key: "k".into(),
            model: "sonic-3".into(),
        };
        assert!(matches!(
            CartesiaSetup::new(&endpoint, DEFAULT_VERSION, &params),
            Err(TtsError::UnsupportedFormat(_))
        ));
    }
}
