//! The simulated phone caller: a telephony provider's media-stream client, as the provider itself
//! would open it against our stream URL. It plays the human on the phone in integration tests,
//! end-to-end tests and the load generator, so it must be faithful and light: one task per
//! caller, no lock, no per-frame allocation beyond the message each frame must be, and no audio
//! kept unless a test asks for it.
//!
//! What is the same for every provider lives here: a frame every 20 ms on the real clock — the
//! script's speech, or silence when it has nothing to say — keys when the script presses them,
//! the provider's stop and a close when the call ends on its side; what the server sends is
//! queued in a playout buffer drained in real time: a mark comes back when the audio before it
//! has played, a clear drops the queue and returns pending marks at once. How each of those is
//! said on the wire, and what the provider would refuse, is the provider's [`wire::CallerWire`]
//! (Twilio's by default, in `sim/twilio/caller_wire.rs`).

mod audio;
mod playout;
mod report;
mod script;
pub mod wire;

pub use audio::{BYTES_PER_MS, CallerAudio, CallerAudioError, FRAME_BYTES, SILENCE};
pub use report::{
    CallerEnd, CallerReport, ClearRecord, MarkRecord, MediaRecord, PROTOCOL_ERROR, ProtocolError,
    SpeechRecord, StepRecord,
};
pub use script::{
    CallerScript, DEFAULT_MACHINE_GREETING, ScriptError, ScriptSpec, Step, StepSpec, machine_beep,
};

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use self::wire::{CallerProtocol, CallerWire, ServerMessage};
use crate::telephony::new_sid;

/// One frame of the wire clock.
const FRAME: Duration = Duration::from_millis(20);
/// A tick this late means the caller itself fell behind the wire clock.
pub const LATE_TICK: Duration = Duration::from_millis(10);

/// Ticks more than [`LATE_TICK`] late in all callers of this process so far, and the worst of
/// them (µs): a load generator's live view of its own lag, while each caller's report has its
/// own at the end.
pub static LATE_TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static WORST_LATE_TICK_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// How long to wait for the server's close after ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What to keep of the server's audio. Frames cost ~32 bytes each (1.6 KB per second of agent
/// speech); audio costs 8 KB per second. The load generator turns both off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Keep a [`MediaRecord`] per `media` message.
    pub frames: bool,
    /// Keep the audio itself ([`CallerReport::outbound_audio`]).
    pub audio: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            frames: true,
            audio: false,
        }
    }
}

/// Everything one simulated caller needs.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// The stream URL from the answer document: `ws://` or `wss://`.
    pub url: String,
    /// The provider's stream protocol (Twilio's by default).
    pub protocol: CallerProtocol,
    /// The provider's ids of the account, the call and the stream.
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    /// The custom values of the answer document (Twilio's `<Parameter>`s), sent back in the
    /// stream's first messages as the provider sends them.
    pub custom_parameters: Vec<(String, String)>,
    pub script: CallerScript,
    pub record: RecordOptions,
    /// The call is hung up (with `stop`) after this long, whatever the script says.
    pub max_duration: Duration,
    pub connect_timeout: Duration,
    /// The provider secret its wire may prove the upgrade with (Twilio: `X-Twilio-Signature`
    /// over the URL, which the server should not rely on alone).
    pub signing_token: Option<String>,
}

impl CallerConfig {
    /// A caller for `url` with fresh SIDs, no parameters and the default recording.
    pub fn new(url: impl Into<String>, script: CallerScript) -> Self {
        Self {
            url: url.into(),
            protocol: CallerProtocol::twilio(),
            account_sid: new_sid("AC"),
            call_sid: new_sid("CA"),
            stream_sid: new_sid("MZ"),
            custom_parameters: Vec::new(),
            script,
            record: RecordOptions::default(),
            max_duration: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            signing_token: None,
        }
    }
}

/// How the call is ended from outside the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteEnd {
    /// The call was hung up (REST `Status=completed`, the callee's side).
    HangUp,
    /// The call was redirected to other TwiML: this stream stops.
    Redirect,
}

/// What the caller has played so far, watched live by whoever needs it as it happens (the fake
/// Twilio's answering-machine detection listens for the end of a greeting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerProgress {
    /// `say` steps begun.
    pub speech_started: usize,
    /// `say` steps played to their end.
    pub speech_ended: usize,
}

/// Ends a running caller from another task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallerControl(Arc<watch::Sender<Option<RemoteEnd>>>);

impl CallerControl {
    /// Ends the call: `stop`, then close.
    pub fn hang_up(&self) {
        self.0.send_replace(Some(RemoteEnd::HangUp));
    }

    /// Stops the stream because the call moved on to other TwiML: `stop`, then close.
    pub fn redirect(&self) {
        self.0.send_replace(Some(RemoteEnd::Redirect));
    }
}

/// A caller running on its own task.
#[derive(Debug)]
pub struct CallerHandle {
    control: CallerControl,
    progress: watch::Receiver<CallerProgress>,
    task: JoinHandle<CallerReport>,
}

impl CallerHandle {
    pub fn control(&self) -> CallerControl {
        self.control.clone()
    }

    /// The caller's progress, updated as it plays.
    pub fn progress(&self) -> watch::Receiver<CallerProgress> {
        self.progress.clone()
    }

    pub fn hang_up(&self) {
        self.control.hang_up();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the call to end and answers what it saw.
    pub async fn finished(self) -> CallerReport {
        match self.task.await {
            Ok(report) => report,
            Err(e) => CallerReport {
                end: Some(CallerEnd::Transport(format!("caller task failed: {e}"))),
                ..Default::default()
            },
        }
    }
}

/// Starts a caller on its own task.
pub fn spawn_caller(config: CallerConfig) -> CallerHandle {
    let (tx, rx) = watch::channel(None);
    let (progress_tx, progress) = watch::channel(CallerProgress::default());
    let task = tokio::spawn(run_caller(config, rx, progress_tx));
    CallerHandle {
        control: CallerControl(Arc::new(tx)),
        progress,
        task,
    }
}

/// Small WebSocket buffers: tungstenite's defaults (128 KiB each way) would make 2000 callers
/// cost half a gigabyte before any audio moves. The read buffer's free part is zeroed before
/// every read, so it is sized for the server's usual write (three ~350-byte frames), not more.
pub fn caller_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
}

/// Runs one call to its end on the current task; `control` can end it from outside, and
/// `progress` tells who watches what has been played.
pub async fn run_caller(
    config: CallerConfig,
    mut control: watch::Receiver<Option<RemoteEnd>>,
    progress: watch::Sender<CallerProgress>,
) -> CallerReport {
    let t0 = Instant::now();
    let mut report = CallerReport {
        call_sid: config.call_sid.clone(),
        stream_sid: config.stream_sid.clone(),
        ..Default::default()
    };
    let mut wire = config.protocol.wire(&config);
    let ws = match connect(&config, wire.as_ref()).await {
        Ok(ws) => ws,
        Err(why) => {
            report.end = Some(CallerEnd::ConnectFailed(why));
            report.ended_at = t0.elapsed();
            return report;
        }
    };
    report.connected_at = Some(t0.elapsed());
    let mut session = Session {
        config: &config,
        wire: wire.as_mut(),
        ws,
        t0,
        report,
        playout: playout::Playout::default(),
        payload: Vec::with_capacity(FRAME_BYTES * 4),
        clears: 0,
        last_media_at: None,
        step: 0,
        step_started: None,
        say_pos: 0,
        progress,
    };
    let end = session.run(&mut control).await;
    let mut report = session.report;
    report.end = Some(end);
    report.ended_at = t0.elapsed();
    report
}

async fn connect(
    config: &CallerConfig,
    wire: &dyn CallerWire,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, String> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad stream URL {:?}: {e}", config.url))?;
    for (name, value) in wire.upgrade_headers(&config.url) {
        request.headers_mut().insert(name, value);
    }
    let connecting =
        tokio_tungstenite::connect_async_with_config(request, Some(caller_ws_config()), true);
    match tokio::time::timeout(config.connect_timeout, connecting).await {
        Err(_) => Err("timed out opening the WebSocket".to_owned()),
        Ok(Err(e)) => Err(format!("WebSocket handshake failed: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

fn remote_end(control: &mut watch::Receiver<Option<RemoteEnd>>) -> Option<RemoteEnd> {
    // `has_changed` is one atomic load; the value is read only when it moved.
    if control.has_changed().unwrap_or(false) {
        *control.borrow_and_update()
    } else {
        None
    }
}

/// What the loop does next.
enum Flow {
    Continue,
    End(CallerEnd),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Session<'a> {
    config: &'a CallerConfig,
    wire: &'a mut dyn CallerWire,
    ws: Ws,
    t0: Instant,
    report: CallerReport,
    playout: playout::Playout,
    /// Reused decode buffer: the server's audio as μ-law.
    payload: Vec<u8>,
    clears: u32,
    last_media_at: Option<Instant>,
    step: usize,
    step_started: Option<Instant>,
    say_pos: usize,
    progress: watch::Sender<CallerProgress>,
}

impl Session<'_> {
    async fn run(&mut self, control: &mut watch::Receiver<Option<RemoteEnd>>) -> CallerEnd {
        if let Err(e) = self.send_greeting().await {
            return CallerEnd::Transport(e.to_string());
        }
        let script = self.config.script.clone();
        let mut ticker = tokio::time::interval_at(Instant::now() + FRAME, FRAME);
        // A late tick is made up at once: the caller's clock, like a phone's, does not slow down.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let deadline = self.t0 + self.config.max_duration;
        // An end asked for before the stream opened is seen at the first tick.
        control.mark_changed();
        loop {
            // Only the socket and the clock wake the caller. An end from outside (the REST API
            // hanging up, a redirect) and the call's longest duration are looked at on each
            // tick, as a provider's media server would at its next frame: at most 20 ms later,
            // and no watch or timer registered again on each of the ~100 wake-ups a second.
            let flow = tokio::select! {
                biased;
                message = self.ws.next() => match message {
                    Some(Ok(message)) => self.on_message(message).await,
                    Some(Err(e)) => Err(e),
                    None => Ok(Flow::End(CallerEnd::ServerClosed)),
                },
                scheduled = ticker.tick() => {
                    if let Some(end) = remote_end(control) {
                        return self.hang_up(match end {
                            RemoteEnd::HangUp => CallerEnd::RemoteHangUp,
                            RemoteEnd::Redirect => CallerEnd::StreamRedirected,
                        }).await;
                    }
                    if scheduled >= deadline {
                        return self.hang_up(CallerEnd::MaxDuration).await;
                    }
                    self.note_tick_lag(scheduled);
                    self.on_tick(script.steps()).await
                }
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::End(CallerEnd::ScriptHangUp)) => {
                    return self.hang_up(CallerEnd::ScriptHangUp).await;
                }
                Ok(Flow::End(end)) => return end,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return CallerEnd::ServerClosed;
                }
                Err(e) => return CallerEnd::Transport(e.to_string()),
            }
        }
    }

    fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// How late this tick ran against its schedule: the caller's own lag, which a load test
    /// must tell apart from the server's.
    fn note_tick_lag(&mut self, scheduled: Instant) {
        let lag = Instant::now().saturating_duration_since(scheduled);
        self.report.tick_lag_max = self.report.tick_lag_max.max(lag);
        if lag > LATE_TICK {
            self.report.late_ticks += 1;
            // Shared counters only on the rare late tick, so on-time callers never contend.
            LATE_TICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            WORST_LATE_TICK_US
                .fetch_max(lag.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn send_greeting(&mut self) -> Result<(), tungstenite::Error> {
        for message in self.wire.greeting() {
            self.ws.send(message).await?;
        }
        Ok(())
    }

    /// One 20 ms tick: play out the server's audio, advance the script, send one frame.
    async fn on_tick(&mut self, steps: &[Step]) -> Result<Flow, tungstenite::Error> {
        let mut due: Vec<usize> = Vec::new();
        let played = self.playout.play(FRAME_BYTES, |mark| due.push(mark));
        self.report.played_bytes += played;
        for mark in due {
            self.echo_mark(mark, false).await?;
        }

        let now = Instant::now();
        let at = self.elapsed();
        let mut frame = [SILENCE; FRAME_BYTES];
        let mut speaking = false;
        let mut dtmf: Vec<char> = Vec::new();
        while let Some(step) = steps.get(self.step) {
            let began = match self.step_started {
                Some(began) => began,
                None => {
                    self.step_started = Some(now);
                    self.say_pos = 0;
                    self.report.steps.push(StepRecord {
                        index: self.step,
                        kind: step.kind(),
                        started_at: at,
                        ended_at: None,
                        timed_out: false,
                    });
                    now
                }
            };
            let waited = now.duration_since(began);
            match step {
                Step::Wait(duration) => {
                    if waited < *duration {
                        break;
                    }
                    self.end_step(at, false);
                }
                Step::WaitForAgentSpeech { timeout } => {
                    // Audio still playing counts, even if it arrived before the step began.
                    let heard =
                        self.last_media_at.is_some_and(|t| t >= began) || self.playout.queued() > 0;
                    if heard {
                        self.end_step(at, false);
                    } else if waited >= *timeout {
                        self.end_step(at, true);
                    } else {
                        break;
                    }
                }
                Step::WaitForAgentSilence { quiet, timeout } => {
                    let since = self.last_media_at.map_or(began, |t| t.max(began));
                    if self.playout.queued() == 0 && now.duration_since(since) >= *quiet {
                        self.end_step(at, false);
                    } else if waited >= *timeout {
                        self.end_step(at, true);
                    } else {
                        break;
                    }
                }
                Step::Say(audio) => {
                    if self.say_pos == 0 {
                        self.report.speech.push(SpeechRecord {
                            step: self.step,
                            started_at: at,
                            ended_at: None,
                        });
                        self.progress.send_modify(|p| p.speech_started += 1);
                    }
                    let from = self.say_pos;
                    let to = (from + FRAME_BYTES).min(audio.len());
                    frame[..to - from].copy_from_slice(&audio.as_bytes()[from..to]);
                    self.say_pos = to;
                    if to >= audio.len() {
                        if let Some(last) = self.report.speech.last_mut() {
                            last.ended_at = Some(at);
                        }
                        self.progress.send_modify(|p| p.speech_ended += 1);
                        self.end_step(at, false);
                    }
                    if to > from {
                        // This tick's frame is taken; the next step starts on the next tick.
                        speaking = true;
                        break;
                    }
                }
                Step::Dtmf(digit) => {
                    dtmf.push(*digit);
                    self.end_step(at, false);
                }
                Step::HangUp => {
                    self.end_step(at, false);
                    return Ok(Flow::End(CallerEnd::ScriptHangUp));
                }
            }
        }
        if self.step >= steps.len() && self.report.script_finished_at.is_none() && !steps.is_empty()
        {
            self.report.script_finished_at = Some(at);
        }
        for digit in dtmf {
            self.send_dtmf(digit, at).await?;
        }
        let frame = self.wire.media(speaking.then_some(&frame[..]));
        self.ws.send(frame).await?;
        self.report.frames_sent += 1;
        Ok(Flow::Continue)
    }

    fn end_step(&mut self, at: Duration, timed_out: bool) {
        if let Some(record) = self.report.steps.last_mut()
            && record.index == self.step
        {
            record.ended_at = Some(at);
            record.timed_out = timed_out;
        }
        self.step += 1;
        self.step_started = None;
    }

    async fn send_dtmf(&mut self, digit: char, at: Duration) -> Result<(), tungstenite::Error> {
        if let Some(message) = self.wire.dtmf(digit) {
            // Queued: it goes out with this tick's frame.
            self.ws.feed(message).await?;
        }
        self.report.dtmf_sent.push((at, digit));
        Ok(())
    }

    async fn echo_mark(&mut self, record: usize, cleared: bool) -> Result<(), tungstenite::Error> {
        let at = self.elapsed();
        let Some(mark) = self.report.marks.get_mut(record) else {
            return Ok(());
        };
        mark.echoed_at = Some(at);
        mark.cleared = cleared;
        let echo = self.wire.mark_echo(&mark.name);
        // Queued: it goes out with this tick's frame, or at the flush after a message.
        self.ws.feed(echo).await
    }

    fn protocol_error(&mut self, detail: impl Into<String>) {
        let at = self.elapsed();
        self.report.protocol_errors.push(ProtocolError {
            at,
            code: PROTOCOL_ERROR,
            detail: detail.into(),
        });
    }

    async fn on_message(&mut self, message: Message) -> Result<Flow, tungstenite::Error> {
        if let Message::Close(_) = message {
            return Ok(Flow::End(CallerEnd::ServerClosed));
        }
        let mut payload = std::mem::take(&mut self.payload);
        let flow = match self.wire.decode(&message, &mut payload) {
            ServerMessage::Audio { warning } => {
                if let Some(warning) = warning {
                    self.protocol_error(warning);
                }
                self.on_media(&payload);
                Ok(Flow::Continue)
            }
            ServerMessage::Mark(name) => {
                let record = self.report.marks.len();
                self.report.marks.push(MarkRecord {
                    name: name.into_owned(),
                    received_at: self.elapsed(),
                    offset: self.playout.received(),
                    echoed_at: None,
                    cleared: false,
                });
                if self.playout.push_mark(record) {
                    self.echo_mark(record, false).await?;
                    self.ws.flush().await?;
                }
                Ok(Flow::Continue)
            }
            ServerMessage::Clear => {
                let mut due: Vec<usize> = Vec::new();
                let dropped = self.playout.clear(|mark| due.push(mark));
                self.clears += 1;
                let at = self.elapsed();
                self.report.clears.push(ClearRecord {
                    at,
                    dropped_bytes: dropped,
                    offset: self.playout.received(),
                });
                let echoed = !due.is_empty();
                for mark in due {
                    self.echo_mark(mark, true).await?;
                }
                if echoed {
                    self.ws.flush().await?;
                }
                Ok(Flow::Continue)
            }
            ServerMessage::Ignore => Ok(Flow::Continue),
            ServerMessage::Violation(detail) => {
                self.protocol_error(detail);
                Ok(Flow::Continue)
            }
        };
        self.payload = payload;
        flow
    }

    fn on_media(&mut self, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let at = self.elapsed();
        let offset = self.playout.push_audio(payload.len());
        self.last_media_at = Some(Instant::now());
        self.report.outbound_bytes += payload.len() as u64;
        self.report.first_media_at.get_or_insert(at);
        self.report.last_media_at = Some(at);
        if self.config.record.frames {
            self.report.media.push(MediaRecord {
                at,
                bytes: payload.len() as u32,
                offset,
                after_clears: self.clears,
            });
        }
        if self.config.record.audio {
            self.report.outbound_audio.extend_from_slice(payload);
        }
    }

    /// Ends the call from the caller's side: the provider's stop, close, wait briefly for the
    /// server's close.
    async fn hang_up(&mut self, end: CallerEnd) -> CallerEnd {
        if let Some(stop) = self.wire.stop()
            && self.ws.send(stop).await.is_err()
        {
            return end;
        }
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        end
    }
}
