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
use tracing::Instrument;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, warn};

use super::health::{Liveness, Probe};
use super::output::TtsOutput;
use super::sample_carry::SampleCarry;
use super::ws::{self, Ws};
use super::{
    TextToSpeech, TtsCommand, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession, TtsTimeouts,
    WordTiming, resolve_api_key, resolve_model,
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
/// Do not reconnect eagerly more often than this (a provider that accepts and drops at once).
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

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
        let setup = CartesiaSetup::new(&self.endpoint, &self.version, &params);
        let timeouts = self.timeouts;
        let max_buffer_delay_ms = self.max_buffer_delay_ms;
        let playout = params.playout.clone();
        Box::pin(async move {
            let setup = setup?;
            let request = setup.websocket_request()?;
            let socket =
                ws::connect(request, ws::socket_config(MAX_MESSAGE), timeouts.connect).await?;
            let (session, commands, events) = TtsSession::channels(playout);
            let task = Session {
                setup,
                max_buffer_delay_ms,
                timeouts,
                ws: Some(socket),
                last_connect: Instant::now(),
                contexts: Vec::with_capacity(2),
                retired: None,
                events,
                liveness: Liveness::new(timeouts),
            };
            tokio::spawn(task.run(commands).in_current_span());
            Ok(session)
        })
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

/// The task that owns a call's Cartesia socket.
struct Session {
    setup: CartesiaSetup,
    max_buffer_delay_ms: u32,
    timeouts: TtsTimeouts,
    /// `None` after a failure until the next reconnect. Invariant: no contexts without a socket.
    ws: Option<Ws>,
    last_connect: Instant,
    /// Contexts in flight: usually one, two while a new turn starts as the last one finishes.
    contexts: Vec<Context>,
    /// The newest generation that may not open a context any more (finished, cancelled,
    /// failed); generations only grow, so older ones are stale too.
    retired: Option<Generation>,
    events: TtsOutput,
    liveness: Liveness,
}

impl Session {
    async fn run(mut self, mut commands: mpsc::Receiver<TtsCommand>) {
        loop {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(TtsCommand::Speak { generation, text, last }) => {
                        self.speak(generation, &text, last).await;
                    }
                    Some(TtsCommand::Cancel { generation }) => self.cancel(generation).await,
                    None => break,
                },
                frame = ws::next_frame(&mut self.ws) => self.on_frame(frame).await,
                () = tokio::time::sleep_until(deadline), if self.ws.is_some() => {
                    self.on_deadline().await;
                }
            }
            if self.events.is_closed() {
                break;
            }
        }
        if let Some(socket) = self.ws.take() {
            ws::close(socket).await;
        }
    }

    fn deadline(&self) -> Instant {
        let link = self.liveness.deadline(!self.contexts.is_empty());
        self.contexts
            .iter()
            .filter(|c| c.closed)
            .map(|c| c.progress + self.timeouts.turn_idle)
            .fold(link, Instant::min)
    }

    async fn speak(&mut self, generation: Generation, text: &str, last: bool) {
        let index = match self
            .contexts
            .iter()
            .position(|c| c.generation == generation)
        {
            Some(index) => index,
            None => {
                if self.is_retired(generation) {
                    debug!(%generation, "cartesia: text for a finished or cancelled turn dropped");
                    return;
                }
                // A newer turn means the older ones get no more text: close them so they finish
                // (and stop counting against the account's concurrency).
                self.close_older_than(generation).await;
                if let Err(error) = self.ensure_connected().await {
                    self.retire(generation);
                    self.emit(TtsEvent::Failed {
                        generation: Some(generation),
                        error,
                    })
                    .await;
                    return;
                }
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
        let message = generation_request(
            &self.setup,
            self.max_buffer_delay_ms,
            &context.id,
            text,
            !last,
        );
        if last {
            self.retire(generation);
        }
        if let Err(error) = self.send(message).await {
            self.connection_lost(error).await;
        }
    }

    async fn close_older_than(&mut self, generation: Generation) {
        let mut messages = Vec::new();
        for context in self
            .contexts
            .iter_mut()
            .filter(|c| c.generation < generation && !c.closed)
        {
            context.closed = true;
            context.progress = Instant::now();
            messages.push(generation_request(
                &self.setup,
                self.max_buffer_delay_ms,
                &context.id,
                "",
                false,
            ));
        }
        for message in messages {
            if let Err(error) = self.send(message).await {
                self.connection_lost(error).await;
                return;
            }
        }
    }

    async fn cancel(&mut self, generation: Generation) {
        self.retire(generation);
        let Some(index) = self
            .contexts
            .iter()
            .position(|c| c.generation == generation)
        else {
            return;
        };
        // Forgetting the context here is what drops its late chunks.
        let context = self.contexts.remove(index);
        let message = serde_json::to_string(&CancelRequest {
            context_id: &context.id,
            cancel: true,
        })
        .unwrap_or_default();
        if let Err(error) = self.send(message).await {
            self.connection_lost(error).await;
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) {
        let message = match frame {
            Some(Ok(message)) => message,
            Some(Err(tungstenite::Error::Capacity(e))) => {
                return self
                    .connection_lost(TtsError::Protocol(format!("oversized message: {e}")))
                    .await;
            }
            Some(Err(e)) => return self.connection_lost(TtsError::Closed(e.to_string())).await,
            None => {
                return self
                    .connection_lost(TtsError::Closed("the provider closed the socket".into()))
                    .await;
            }
        };
        self.liveness.heard();
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Close(frame) => {
                let reason =
                    frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                self.connection_lost(TtsError::Closed(format!(
                    "the provider closed the socket{reason}"
                )))
                .await;
            }
            Message::Binary(_) => debug!("cartesia: unexpected binary frame skipped"),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }

    async fn on_text(&mut self, text: &str) {
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
                self.connection_error(message.error()).await;
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
                    Ok(audio) => self.events.audio(generation, audio).await,
                    Err(e) => warn!(error = %e, "cartesia: chunk with bad base64 skipped"),
                }
            }
            "timestamps" => {
                if let Some(timestamps) = message.word_timestamps {
                    let words = timestamps.into_words();
                    if !words.is_empty() {
                        self.emit(TtsEvent::Words { generation, words }).await;
                    }
                }
            }
            "done" => {
                self.contexts.remove(index);
                self.retire(generation);
                self.events.done(generation).await;
            }
            "error" => {
                let error = message.error();
                self.contexts.remove(index);
                self.retire(generation);
                self.emit(TtsEvent::Failed {
                    generation: Some(generation),
                    error,
                })
                .await;
            }
            _ => {} // flush_done, phoneme_timestamps: nothing the call needs.
        }
    }

    /// An error frame about no context: every turn in flight is affected.
    async fn connection_error(&mut self, error: TtsError) {
        if self.contexts.is_empty() {
            return self
                .emit(TtsEvent::Failed {
                    generation: None,
                    error,
                })
                .await;
        }
        for context in std::mem::take(&mut self.contexts) {
            self.retire(context.generation);
            self.emit(TtsEvent::Failed {
                generation: Some(context.generation),
                error: error.clone(),
            })
            .await;
        }
    }

    async fn on_deadline(&mut self) {
        let now = Instant::now();
        if let Some(index) = self
            .contexts
            .iter()
            .position(|c| c.closed && c.progress + self.timeouts.turn_idle <= now)
        {
            // The link is alive but this turn stopped progressing: give up on it.
            let context = self.contexts.remove(index);
            self.retire(context.generation);
            let cancel = serde_json::to_string(&CancelRequest {
                context_id: &context.id,
                cancel: true,
            })
            .unwrap_or_default();
            self.emit(TtsEvent::Failed {
                generation: Some(context.generation),
                error: TtsError::Stalled(format!(
                    "no progress on the turn for {:?}",
                    self.timeouts.turn_idle
                )),
            })
            .await;
            if let Err(error) = self.send(cancel).await {
                self.connection_lost(error).await;
            }
            return;
        }
        if self.liveness.deadline(!self.contexts.is_empty()) > now {
            return;
        }
        match self.liveness.on_deadline() {
            Probe::SendPing => {
                if let Some(socket) = &mut self.ws
                    && let Err(error) = ws::send(
                        socket,
                        Message::Ping(Default::default()),
                        self.timeouts.send,
                    )
                    .await
                {
                    self.connection_lost(error).await;
                }
            }
            Probe::Dead => {
                let error = TtsError::Stalled(format!(
                    "no answer to a ping within {:?}",
                    self.timeouts.pong
                ));
                self.connection_lost(error).await;
            }
        }
    }

    /// The socket is gone or unusable: fail every turn in flight, then reconnect so the next
    /// turn finds a working socket.
    async fn connection_lost(&mut self, error: TtsError) {
        warn!(%error, in_flight = self.contexts.len(), "cartesia: connection lost");
        // Dropping the socket without a close handshake: the peer may be gone.
        self.ws = None;
        for context in std::mem::take(&mut self.contexts) {
            self.retire(context.generation);
            self.emit(TtsEvent::Failed {
                generation: Some(context.generation),
                error: error.clone(),
            })
            .await;
        }
        if self.last_connect.elapsed() >= RECONNECT_BACKOFF
            && let Err(e) = self.ensure_connected().await
        {
            warn!(error = %e, "cartesia: reconnect failed; retrying at the next turn");
        }
    }

    async fn ensure_connected(&mut self) -> Result<(), TtsError> {
        if self.ws.is_some() {
            return Ok(());
        }
        self.last_connect = Instant::now();
        let request = self.setup.websocket_request()?;
        let socket = ws::connect(
            request,
            ws::socket_config(MAX_MESSAGE),
            self.timeouts.connect,
        )
        .await?;
        self.ws = Some(socket);
        self.liveness.heard();
        Ok(())
    }

    async fn send(&mut self, text: String) -> Result<(), TtsError> {
        match &mut self.ws {
            Some(socket) => ws::send(socket, Message::text(text), self.timeouts.send).await,
            None => Err(TtsError::Closed("no connection".into())),
        }
    }

    async fn emit(&mut self, event: TtsEvent) {
        // A closed receiver ends the session at the top of the loop.
        self.events.send(event).await;
    }

    fn retire(&mut self, generation: Generation) {
        self.retired = Some(self.retired.map_or(generation, |r| r.max(generation)));
    }

    fn is_retired(&self, generation: Generation) -> bool {
        self.retired.is_some_and(|r| generation <= r)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::CartesiaVoice;
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
