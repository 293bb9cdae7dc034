//! Sarvam Bulbul over its streaming WebSocket (`/text-to-speech/ws`).
//!
//! The socket carries one utterance at a time and has no ids: `config` first (codec and rate set
//! explicitly, so audio arrives in the transport's format), then `text` pieces and `flush`es;
//! each `flush` is answered by a `final` event (asked for with `send_completion_event=true`)
//! once the audio of what it released has been sent. Audio is therefore attributed to the one
//! active generation, which is done when the call has closed it and every flush sent for it
//! has had its final.
//!
//! Flushing: Sarvam holds text below `min_buffer_size` (50 characters) until more text or a
//! flush comes. The call hands over whole phrases, so what it has sent is flushed at the end of
//! each sentence (Sarvam's own unit of synthesis) and whenever none of its commands are waiting:
//! phrases that came together go to synthesis together, and none waits in Sarvam's buffer for
//! text that may be seconds away — a short first phrase ("Sure.") is heard after Sarvam's
//! first-byte delay, and a reply never falls silent between phrases because one was left below
//! the threshold. A flush is sent only after new text, never empty, so every flush has text to
//! answer for.
//!
//! Word timings: Sarvam gives none. The audio between two finals is the text of one flush, so
//! at each final its words are spread over that audio by characters and sent as
//! [`TtsEvent::Words`]; the call's marks, and what a barge-in keeps of the reply, follow the
//! reply sentence by sentence instead of appearing only once all of it is synthesised.
//!
//! A newer generation's text waits client-side until the active one's last `final`, so
//! attribution never depends on guesses about how the server orders overlapping utterances; the
//! call starts a new generation only once the previous one is done, so this wait is not on a
//! reply's path.
//!
//! Barge-in: Sarvam has no cancel message. Draining the cancelled utterance until its `final`
//! would keep the socket busy (and, if the turn was not flushed yet, leave its text in the
//! server's buffer to be spoken in front of the next turn). Instead the socket is dropped and a
//! fresh one opened at once: nothing of the cancelled turn can arrive on it, and the handshake
//! happens while the caller is still speaking, off the next turn's critical path.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tracing::{debug, warn};

use super::sample_carry::SampleCarry;
use super::socket_session::{self, Actions, Retired, TtsWire};
use super::ws;
use super::{
    TextToSpeech, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession, TtsTimeouts, WordTiming,
    resolve_api_key, resolve_model, wav,
};
use crate::assistant::TtsConfig;
use crate::audio::{AudioFormat, Encoding};
use crate::config::ProviderConfig;
use crate::generation::Generation;

pub(crate) const DEFAULT_MODEL: &str = "bulbul:v2";
/// Rates the streaming endpoint produces.
const SAMPLE_RATES: [u32; 4] = [8000, 16_000, 22_050, 24_000];
/// Largest message accepted. Sarvam sends a synthesis chunk (up to `max_chunk_length`
/// characters, ~10 s of speech) per message: 10 s of 24 kHz PCM16 is 480 KB, 640 KB in base64.
const MAX_MESSAGE: usize = 2 * 1024 * 1024;

/// Sarvam over WebSocket.
#[derive(Debug, Clone)]
pub struct SarvamTts {
    endpoint: TtsEndpoint,
    timeouts: TtsTimeouts,
    min_buffer_size: u32,
    max_chunk_length: u32,
}

impl SarvamTts {
    pub fn new(endpoint: TtsEndpoint) -> Self {
        Self {
            endpoint,
            timeouts: TtsTimeouts::default(),
            min_buffer_size: 50,
            max_chunk_length: 150,
        }
    }

    /// A client from the server's `[sarvam]` section.
    pub fn from_config(config: &ProviderConfig) -> Self {
        Self::new(TtsEndpoint {
            base_url: config.base_url.clone(),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
        })
    }

    pub fn with_timeouts(mut self, timeouts: TtsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sarvam's text buffering: characters held before synthesis starts (`min_buffer_size`,
    /// default 50) and characters per synthesis chunk (`max_chunk_length`, default 150).
    pub fn with_buffering(mut self, min_buffer_size: u32, max_chunk_length: u32) -> Self {
        self.min_buffer_size = min_buffer_size;
        self.max_chunk_length = max_chunk_length;
        self
    }
}

impl TextToSpeech for SarvamTts {
    fn connect(&self, params: TtsParams) -> BoxFuture<'static, Result<TtsSession, TtsError>> {
        let wire = SarvamSetup::new(
            &self.endpoint,
            &params,
            self.min_buffer_size,
            self.max_chunk_length,
        )
        .map(|setup| SarvamWire {
            setup,
            turn_idle: self.timeouts.turn_idle,
            active: None,
            waiting: VecDeque::new(),
            retired: Retired::default(),
        });
        socket_session::start(wire, &params, self.timeouts)
    }
}

/// A call's Sarvam stream settings, fixed for the call.
struct SarvamSetup {
    url: url::Url,
    api_key: String,
    /// The `config` message, serialised once and sent first on every socket.
    config: String,
    output: AudioFormat,
}

#[derive(Serialize)]
struct ConfigMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: ConfigData<'a>,
}

#[derive(Serialize)]
struct ConfigData<'a> {
    target_language_code: &'a str,
    speaker: &'a str,
    /// A string on this endpoint.
    speech_sample_rate: String,
    output_audio_codec: &'static str,
    min_buffer_size: u32,
    max_chunk_length: u32,
}

impl SarvamSetup {
    fn new(
        endpoint: &TtsEndpoint,
        params: &TtsParams,
        min_buffer_size: u32,
        max_chunk_length: u32,
    ) -> Result<Self, TtsError> {
        let TtsConfig::Sarvam(voice) = &params.voice else {
            return Err(TtsError::Misconfigured(
                "the Sarvam client was given a voice of another provider".to_owned(),
            ));
        };
        let output = params.output;
        if !SAMPLE_RATES.contains(&output.sample_rate) {
            return Err(TtsError::UnsupportedFormat(output));
        }
        let codec = match output.encoding {
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
            Encoding::Pcm16 => "linear16",
        };
        let model = resolve_model(voice.model.as_deref(), endpoint, DEFAULT_MODEL);
        let mut url = ws::ws_url(&endpoint.base_url, "/text-to-speech/ws")?;
        url.query_pairs_mut()
            .append_pair("model", &model)
            .append_pair("send_completion_event", "true");
        // Speakers are lowercase on Sarvam's side; a capitalised name is rejected.
        let speaker = voice.speaker.to_lowercase();
        let config = serde_json::to_string(&ConfigMessage {
            kind: "config",
            data: ConfigData {
                target_language_code: &voice.target_language_code,
                speaker: &speaker,
                speech_sample_rate: output.sample_rate.to_string(),
                output_audio_codec: codec,
                min_buffer_size,
                max_chunk_length,
            },
        })
        .map_err(|e| TtsError::Misconfigured(e.to_string()))?;
        Ok(Self {
            url,
            api_key: resolve_api_key(voice.api_key.as_deref(), endpoint)?,
            config,
            output,
        })
    }
}

#[derive(Serialize)]
struct TextMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: TextData<'a>,
}

#[derive(Serialize)]
struct TextData<'a> {
    text: &'a str,
}

const FLUSH: &str = r#"{"type":"flush"}"#;
const PING: &str = r#"{"type":"ping"}"#;

#[derive(Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<ServerData<'a>>,
}

#[derive(Deserialize)]
struct ServerData<'a> {
    #[serde(default, borrow)]
    audio: Option<Cow<'a, str>>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl ServerData<'_> {
    fn error(&self) -> TtsError {
        let message = self
            .message
            .clone()
            .or_else(|| {
                self.error
                    .as_ref()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            })
            .unwrap_or_else(|| "unspecified error".to_owned());
        let status = match &self.code {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(serde_json::Value::String(code)) => Some(match code.as_str() {
                "invalid_api_key_error" => 403,
                "insufficient_quota_error" | "rate_limit_exceeded_error" => 429,
                "internal_server_error" => 500,
                "unprocessable_entity_error" => 422,
                _ => 400,
            }),
            _ => None,
        };
        ws::status_error(status.unwrap_or(400), message)
    }
}

/// The generation whose audio the socket is carrying.
struct Active {
    generation: Generation,
    /// The call sent the last piece: no more text comes for this generation.
    closed: bool,
    /// Text sent since the last `flush` (it may be sitting in Sarvam's buffer).
    unflushed: String,
    /// The text of each `flush` whose `final` has not come yet, oldest first.
    flushed: VecDeque<String>,
    /// Audio bytes of this generation received so far, and up to the last `final`.
    audio_bytes: u64,
    timed_bytes: u64,
    carry: SampleCarry,
    /// No audio yet (a WAV header, if any, would be at its start).
    first_audio: bool,
    /// When the socket last moved this generation on (a flush sent, audio received).
    progress: Instant,
}

impl Active {
    /// Everything was sent, flushed and answered: the generation is complete.
    fn complete(&self) -> bool {
        self.closed && self.unflushed.is_empty() && self.flushed.is_empty()
    }
}

/// Whether `text` ends a sentence (what Sarvam's own chunking cuts at).
fn ends_sentence(text: &str) -> bool {
    text.trim_end()
        .ends_with(['.', '!', '?', '…', '।', '॥', '。', '！', '？'])
}

/// Word timings for `text`, spoken in the audio between `from` and `to` seconds: Sarvam gives
/// none, so each word ends where its last character falls, the span shared by characters. A
/// flush's text is a phrase or a few, so the estimate is close; the call places each word's
/// mark by it and, at a barge-in, keeps the words whose marks came back.
fn estimate_words(text: &str, from: f32, to: f32) -> Vec<WordTiming> {
    let total = text.chars().count().max(1) as f32;
    let at = |chars: usize| from + (to - from) * chars as f32 / total;
    let mut words = Vec::new();
    let mut start = None;
    let mut word = String::new();
    for (i, c) in text.chars().chain(std::iter::once(' ')).enumerate() {
        if c.is_whitespace() {
            if let Some(first) = start.take() {
                words.push(WordTiming {
                    word: std::mem::take(&mut word),
                    start: at(first),
                    end: at(i),
                });
            }
        } else {
            start.get_or_insert(i);
            word.push(c);
        }
    }
    words
}

/// A generation whose text waits for the active one to finish.
struct Waiting {
    generation: Generation,
    text: String,
    last: bool,
}

/// Sarvam's protocol for the shared socket session: one utterance at a time, no ids.
struct SarvamWire {
    setup: SarvamSetup,
    turn_idle: Duration,
    active: Option<Active>,
    waiting: VecDeque<Waiting>,
    retired: Retired,
}

impl TtsWire for SarvamWire {
    const PROVIDER: &'static str = "sarvam";
    const MAX_MESSAGE: usize = MAX_MESSAGE;

    fn request(&self) -> Result<tungstenite::handshake::client::Request, TtsError> {
        ws::request(
            &self.setup.url,
            &[("api-subscription-key", &self.setup.api_key)],
        )
    }

    fn greeting(&self) -> Option<&str> {
        Some(&self.setup.config)
    }

    fn speak(&mut self, generation: Generation, text: String, last: bool, out: &mut Actions) {
        if let Some(active) = &self.active
            && active.generation == generation
        {
            if active.closed {
                warn!(%generation, "sarvam: text after the last piece of a turn dropped");
                return;
            }
            return self.send_turn_text(&text, last, out);
        }
        if let Some(waiting) = self.waiting.iter_mut().find(|w| w.generation == generation) {
            if waiting.last && !text.is_empty() {
                warn!(%generation, "sarvam: text after the last piece of a turn dropped");
                return;
            }
            waiting.text.push_str(&text);
            waiting.last |= last;
            return;
        }
        if self.retired.contains(generation) {
            debug!(%generation, "sarvam: text for a finished or cancelled turn dropped");
            return;
        }
        if self.active.is_some() {
            // A newer turn means the active one gets no more text: close it (its text is
            // flushed when the session settles) so it finishes.
            if self.active.as_ref().is_some_and(|a| !a.closed) {
                self.send_turn_text("", true, out);
            }
            for older in &mut self.waiting {
                older.last = true;
            }
            self.waiting.push_back(Waiting {
                generation,
                text,
                last,
            });
            return;
        }
        self.start(generation, &text, last, out);
    }

    fn cancel(&mut self, generation: Generation, out: &mut Actions) {
        self.retired.retire(generation);
        self.waiting.retain(|w| w.generation != generation);
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.generation == generation)
        {
            self.active = None;
            // No cancel in the protocol: a fresh socket is the only way to stop the server's
            // synthesis and clear its text buffer.
            out.replace_socket();
        }
    }

    fn message(&mut self, text: &str, out: &mut Actions) {
        let message: ServerMessage<'_> = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                warn!(error = %e, "sarvam: malformed message skipped");
                return;
            }
        };
        match (&*message.kind, message.data) {
            (
                "audio",
                Some(ServerData {
                    audio: Some(b64), ..
                }),
            ) => self.on_audio(&b64, out),
            (
                "event",
                Some(ServerData {
                    event_type: Some(event),
                    ..
                }),
            ) if event == "final" => self.on_final(out),
            ("error", Some(data)) => self.on_error(data.error(), out),
            ("error", None) => {
                self.on_error(TtsError::Protocol("error without details".into()), out)
            }
            (kind, _) => debug!(kind, "sarvam: message skipped"),
        }
    }

    /// Turns waiting for the socket start here, once, rather than from every handler that
    /// frees it; then whatever text was sent is flushed (see the module doc).
    fn settle(&mut self, out: &mut Actions) {
        if self.active.is_none()
            && let Some(next) = self.waiting.pop_front()
        {
            self.start(next.generation, &next.text, next.last, out);
        }
        self.flush_sent_text(out);
    }

    fn busy(&self) -> bool {
        self.active.is_some()
    }

    /// Sarvam owes audio or a final: it must keep making progress. (Waiting for the call's
    /// next phrase is not Sarvam's delay.)
    fn turn_deadline(&self) -> Option<Instant> {
        self.active
            .as_ref()
            .filter(|active| !active.flushed.is_empty())
            .map(|active| active.progress + self.turn_idle)
    }

    fn turn_overdue(&mut self, _now: Instant, out: &mut Actions) {
        out.link_lost(TtsError::Stalled(format!(
            "no progress on the turn for {:?}",
            self.turn_idle
        )));
    }

    fn idle_keepalive(&self) -> Option<&'static str> {
        // Sarvam closes idle sockets; its own keep-alive is an application ping.
        Some(PING)
    }

    fn link_lost(&mut self) -> Vec<Generation> {
        let lost = self.active.take().map(|active| active.generation);
        if let Some(generation) = lost {
            self.retired.retire(generation);
        }
        lost.into_iter().collect()
    }

    /// Waiting turns reconnect when they start; otherwise reconnect now, off the critical path
    /// of the next turn.
    fn reconnect_at_once(&self) -> bool {
        self.waiting.is_empty()
    }
}

impl SarvamWire {
    /// Makes `generation` the active one and sends its text so far (connecting first if the
    /// socket is gone).
    fn start(&mut self, generation: Generation, text: &str, last: bool, out: &mut Actions) {
        self.active = Some(Active {
            generation,
            closed: false,
            unflushed: String::new(),
            flushed: VecDeque::new(),
            audio_bytes: 0,
            timed_bytes: 0,
            carry: SampleCarry::new(self.setup.output.encoding),
            first_audio: true,
            progress: Instant::now(),
        });
        self.send_turn_text(text, last, out);
    }

    /// Sends a piece of the active turn; `last` closes it. The flush comes at the end of a
    /// sentence, or once the call has no more commands waiting ([`TtsWire::settle`]).
    fn send_turn_text(&mut self, text: &str, last: bool, out: &mut Actions) {
        if !text.is_empty() {
            out.send(
                serde_json::to_string(&TextMessage {
                    kind: "text",
                    data: TextData { text },
                })
                .unwrap_or_default(),
            );
            if let Some(active) = &mut self.active {
                active.unflushed.push_str(text);
            }
            // A sentence is Sarvam's own unit of synthesis: flushing it costs no prosody, and
            // its final (with its word timings) comes as soon as it is spoken, not after the
            // sentences the model sent with it.
            if ends_sentence(text) {
                self.flush_sent_text(out);
            }
        }
        if last && let Some(active) = &mut self.active {
            active.closed = true;
            let generation = active.generation;
            self.retired.retire(generation);
            // Closed with everything already answered (the last phrase's final came before
            // the call said it was the last): done now.
            self.finish_if_complete(out);
        }
    }

    /// Flushes the active turn's text sent since the last flush, so none of it waits in
    /// Sarvam's buffer for text that may be seconds away. Never sends an empty flush.
    fn flush_sent_text(&mut self, out: &mut Actions) {
        let Some(active) = &mut self.active else {
            return;
        };
        if active.unflushed.is_empty() {
            return;
        }
        let text = std::mem::take(&mut active.unflushed);
        active.flushed.push_back(text);
        active.progress = Instant::now();
        out.send(FLUSH.to_owned());
    }

    /// A `final`: the oldest owed flush's audio is complete, so its words are placed in the
    /// audio received since the previous final.
    fn on_final(&mut self, out: &mut Actions) {
        let bytes_per_second = f64::from(self.setup.output.sample_rate)
            * self.setup.output.encoding.bytes_per_sample() as f64;
        let Some(active) = &mut self.active else {
            debug!("sarvam: final with no active turn skipped");
            return;
        };
        let Some(text) = active.flushed.pop_front() else {
            debug!("sarvam: final with no flush owed skipped");
            return;
        };
        active.progress = Instant::now();
        let seconds = |bytes: u64| (bytes as f64 / bytes_per_second) as f32;
        let words = estimate_words(
            &text,
            seconds(active.timed_bytes),
            seconds(active.audio_bytes),
        );
        active.timed_bytes = active.audio_bytes;
        let generation = active.generation;
        if !words.is_empty() {
            out.event(TtsEvent::Words { generation, words });
        }
        self.finish_if_complete(out);
    }

    /// Ends the active turn once it is complete: `Done`, and the socket is free.
    fn finish_if_complete(&mut self, out: &mut Actions) {
        if !self.active.as_ref().is_some_and(Active::complete) {
            return;
        }
        if let Some(active) = self.active.take() {
            self.retired.retire(active.generation);
            out.done(active.generation);
        }
    }

    fn on_audio(&mut self, b64: &str, out: &mut Actions) {
        let Some(active) = &mut self.active else {
            debug!("sarvam: audio with no active turn dropped");
            return;
        };
        active.progress = Instant::now();
        let mut audio = match active.carry.decode_base64(b64.as_bytes()) {
            Ok(audio) => audio,
            Err(e) => {
                warn!(error = %e, "sarvam: audio with bad base64 skipped");
                return;
            }
        };
        if std::mem::take(&mut active.first_audio)
            && let Some(header) = wav::streamed_header_len(&audio)
        {
            // Headerless PCM is what was asked for; strip a WAV header should one come anyway.
            audio = audio.slice(header.min(audio.len())..);
        }
        if !audio.is_empty() {
            active.audio_bytes += audio.len() as u64;
            out.audio(active.generation, audio);
        }
    }

    /// An error message: it fails the active turn (or the session, if none is active), and the
    /// socket is replaced because the server's buffer state is unknown after it.
    fn on_error(&mut self, error: TtsError, out: &mut Actions) {
        warn!(%error, "sarvam: provider error");
        let generation = self.active.take().map(|a| a.generation);
        if let Some(generation) = generation {
            self.retired.retire(generation);
        }
        out.failed(generation, error);
        if generation.is_some() {
            out.replace_socket();
        }
    }
}

/// Feeds server text messages to the wire as a live socket's session does (each followed by
/// `settle`), with one turn speaking and one waiting; answers how many actions they produced.
/// The entry point of the fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn read_server_messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> usize {
    let params = TtsParams {
        voice: TtsConfig::Sarvam(crate::assistant::SarvamVoice {
            speaker: "anushka".into(),
            target_language_code: "hi-IN".into(),
            api_key: None,
            model: None,
        }),
        output: AudioFormat::PCM16_16K,
        playout: None,
    };
    let endpoint = TtsEndpoint {
        base_url: "https://api.sarvam.ai".into(),
        api_key: "key".into(),
        model: DEFAULT_MODEL.into(),
    };
    let mut wire = SarvamWire {
        setup: SarvamSetup::new(&endpoint, &params, 50, 150).expect("a valid setup"),
        turn_idle: Duration::from_secs(5),
        active: None,
        waiting: VecDeque::new(),
        retired: Retired::default(),
    };
    let mut out = Actions::default();
    wire.speak(
        Generation(1),
        "Hello there. How are".into(),
        false,
        &mut out,
    );
    wire.speak(Generation(1), " you today?".into(), true, &mut out);
    wire.speak(Generation(2), "Next turn.".into(), true, &mut out);
    wire.settle(&mut out);
    let mut actions = out.take().len();
    for text in messages {
        wire.message(text, &mut out);
        wire.settle(&mut out);
        actions += out.take().len();
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::SarvamVoice;
    use crate::tts::socket_session::Action;
    use serde_json::Value;

    fn params(speaker: &str, output: AudioFormat) -> TtsParams {
        TtsParams {
            voice: TtsConfig::Sarvam(SarvamVoice {
                speaker: speaker.into(),
                target_language_code: "hi-IN".into(),
                api_key: None,
                model: None,
            }),
            output,
            playout: None,
        }
    }

    fn endpoint() -> TtsEndpoint {
        TtsEndpoint {
            base_url: "https://api.sarvam.ai".into(),
            api_key: "server".into(),
            model: "bulbul:v2".into(),
        }
    }

    #[test]
    fn config_asks_for_the_transport_format_explicitly() {
        let setup = SarvamSetup::new(
            &endpoint(),
            &params("Anushka", AudioFormat::MULAW_8K),
            50,
            150,
        )
        .unwrap();
        assert_eq!(
            setup.url.as_str(),
            "wss://api.sarvam.ai/text-to-speech/ws?model=bulbul%3Av2&send_completion_event=true"
        );
        let config: Value = serde_json::from_str(&setup.config).unwrap();
        assert_eq!(config["type"], "config");
        assert_eq!(config["data"]["output_audio_codec"], "mulaw");
        assert_eq!(config["data"]["speech_sample_rate"], "8000");
        assert_eq!(config["data"]["speaker"], "anushka");
        assert!(config["data"].get("pitch").is_none());
        let setup = SarvamSetup::new(
            &endpoint(),
            &params("anushka", AudioFormat::PCM16_16K),
            50,
            150,
        )
        .unwrap();
        let config: Value = serde_json::from_str(&setup.config).unwrap();
        assert_eq!(config["data"]["output_audio_codec"], "linear16");
    }

    fn wire() -> SarvamWire {
        SarvamWire {
            setup: SarvamSetup::new(
                &endpoint(),
                &params("anushka", AudioFormat::MULAW_8K),
                50,
                150,
            )
            .unwrap(),
            turn_idle: Duration::from_secs(5),
            active: None,
            waiting: VecDeque::new(),
            retired: Retired::default(),
        }
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Send(text) => {
                    let v: Value = serde_json::from_str(text).unwrap();
                    v["type"].as_str().unwrap().to_owned()
                }
                Action::Audio(..) => "audio".into(),
                Action::Done(g) => format!("done {}", g.0),
                Action::Event(TtsEvent::Words { .. }) => "words".into(),
                Action::Event(TtsEvent::Failed { .. }) => "failed".into(),
                Action::Event(_) => "event".into(),
                Action::LinkLost(_) => "link lost".into(),
                Action::Replace => "replace".into(),
            })
            .collect()
    }

    #[test]
    fn a_newer_turn_waits_for_the_final_of_the_active_one() {
        let mut wire = wire();
        let mut out = Actions::default();
        wire.speak(Generation(1), "Hello there".into(), false, &mut out);
        wire.speak(Generation(2), "Next turn.".into(), true, &mut out);
        wire.settle(&mut out);
        // The active turn is closed and its text flushed; the newer one only waits.
        assert_eq!(kinds(&out.take()), ["text", "flush"]);
        wire.settle(&mut out);
        assert!(out.take().is_empty());
        wire.message(r#"{"type":"audio","data":{"audio":"//8="}}"#, &mut out);
        wire.message(
            r#"{"type":"event","data":{"event_type":"final"}}"#,
            &mut out,
        );
        wire.settle(&mut out);
        assert_eq!(
            kinds(&out.take()),
            ["audio", "words", "done 1", "text", "flush"]
        );
    }

    #[test]
    fn a_cancel_replaces_the_socket_and_a_lost_link_fails_only_the_active_turn() {
        let mut wire = wire();
        let mut out = Actions::default();
        wire.speak(Generation(1), "One.".into(), false, &mut out);
        wire.cancel(Generation(1), &mut out);
        assert_eq!(kinds(&out.take()), ["text", "flush", "replace"]);
        wire.message(r#"{"type":"audio","data":{"audio":"//8="}}"#, &mut out);
        assert!(
            out.take().is_empty(),
            "audio of a cancelled turn is dropped"
        );

        wire.speak(Generation(2), "Two.".into(), false, &mut out);
        wire.speak(Generation(3), "Three.".into(), true, &mut out);
        out.take();
        assert!(
            !wire.reconnect_at_once(),
            "the waiting turn reconnects when it starts"
        );
        assert_eq!(wire.link_lost(), [Generation(2)]);
        wire.settle(&mut out);
        assert_eq!(kinds(&out.take()), ["text", "flush"]);
        assert!(wire.reconnect_at_once());
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert!(matches!(
            SarvamSetup::new(
                &endpoint(),
                &params("anushka", AudioFormat::new(Encoding::Pcm16, 48_000)),
                50,
                150
            ),
            Err(TtsError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn error_codes_map_to_typed_errors() {
        let data: ServerData<'_> =
            serde_json::from_str(r#"{"message":"Text too long","code":400}"#).unwrap();
        assert!(matches!(
            data.error(),
            TtsError::Rejected { status: 400, .. }
        ));
        let data: ServerData<'_> =
            serde_json::from_str(r#"{"message":"slow down","code":"rate_limit_exceeded_error"}"#)
                .unwrap();
        assert!(matches!(data.error(), TtsError::RateLimited { .. }));
    }
}
