//! The task behind every WebSocket [`TtsSession`]: one per call, owning the provider socket.
//!
//! Providers plug in through [`TtsWire`], a state machine without I/O: it is told of the call's
//! commands, the provider's messages and overdue turns, and answers with [`Action`]s (messages
//! to send, audio and events for the call, "this link is unusable", "open a fresh socket").
//! This task does every piece of I/O in the order the wire asked for it, so what all providers
//! share is written once: the `select!` over commands, frames and deadlines; liveness pings and
//! the verdict on a silent link; failing the turns in flight when the socket dies and
//! reconnecting off the next turn's path; lazy reconnection when a turn needs a socket; and the
//! output's backpressure (audio waits for the call's writer, which holds back the socket reads).
//!
//! Ordering: a wire's actions run in order. After a failed send the rest of that batch's sends
//! are skipped (they belong to turns the failure just ended); its audio and events still go out.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{Instrument, debug, warn};

use super::health::{Liveness, Probe};
use super::output::TtsOutput;
use super::ws::{self, Ws};
use super::{TtsCommand, TtsError, TtsEvent, TtsParams, TtsSession, TtsTimeouts};
use crate::generation::Generation;

/// Do not reconnect eagerly more often than this (a provider that accepts and drops at once).
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// What a wire asks the session to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// A text message to the provider (connecting first if the socket is gone).
    Send(String),
    /// Audio of a generation, for the call.
    Audio(Generation, Bytes),
    /// The provider finished a generation's utterance.
    Done(Generation),
    /// Any other event for the call (word timings, failures).
    Event(TtsEvent),
    /// The link cannot be trusted any more: fail the turns in flight and reconnect.
    LinkLost(TtsError),
    /// Drop the socket and open a fresh one now (a provider without a cancel message).
    Replace,
}

/// The actions of one step, kept between steps so that their buffer is reused.
#[derive(Debug, Default)]
pub(crate) struct Actions(Vec<Action>);

impl Actions {
    pub(crate) fn send(&mut self, message: String) {
        self.0.push(Action::Send(message));
    }

    pub(crate) fn audio(&mut self, generation: Generation, audio: Bytes) {
        self.0.push(Action::Audio(generation, audio));
    }

    pub(crate) fn done(&mut self, generation: Generation) {
        self.0.push(Action::Done(generation));
    }

    pub(crate) fn event(&mut self, event: TtsEvent) {
        self.0.push(Action::Event(event));
    }

    pub(crate) fn failed(&mut self, generation: Option<Generation>, error: TtsError) {
        self.0
            .push(Action::Event(TtsEvent::Failed { generation, error }));
    }

    pub(crate) fn link_lost(&mut self, error: TtsError) {
        self.0.push(Action::LinkLost(error));
    }

    pub(crate) fn replace_socket(&mut self) {
        self.0.push(Action::Replace);
    }

    /// The actions so far (tests, and the wires' fuzz entry points).
    pub(crate) fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.0)
    }
}

/// The newest generation that may not produce any more (finished, cancelled, failed).
/// Generations only grow, so every older one is retired too.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Retired(Option<Generation>);

impl Retired {
    pub(crate) fn retire(&mut self, generation: Generation) {
        self.0 = Some(self.0.map_or(generation, |r| r.max(generation)));
    }

    pub(crate) fn contains(&self, generation: Generation) -> bool {
        self.0.is_some_and(|r| generation <= r)
    }
}

/// A TTS provider's WebSocket protocol, as the session needs it. Every method is synchronous:
/// what needs I/O is asked for through [`Actions`].
pub(crate) trait TtsWire: Send + 'static {
    /// For logs.
    const PROVIDER: &'static str;
    /// Largest message accepted from the provider.
    const MAX_MESSAGE: usize;
    /// The upgrade request (URL, credentials). Called for every (re)connection.
    fn request(&self) -> Result<Request, TtsError>;
    /// The first message on every fresh socket, if the protocol has one.
    fn greeting(&self) -> Option<&str> {
        None
    }
    /// Text for `generation`; `last` closes its utterance.
    fn speak(&mut self, generation: Generation, text: String, last: bool, out: &mut Actions);
    /// Stop `generation` now (barge-in).
    fn cancel(&mut self, generation: Generation, out: &mut Actions);
    /// A text message from the provider.
    fn message(&mut self, text: &str, out: &mut Actions);
    /// After every step (a batch of commands, a frame, a deadline): work that waits for the
    /// state to settle, such as starting a queued turn.
    fn settle(&mut self, _out: &mut Actions) {}
    /// Some turn waits for the provider (pings come sooner).
    fn busy(&self) -> bool;
    /// When the provider is overdue on a turn it owes progress on.
    fn turn_deadline(&self) -> Option<Instant>;
    /// [`Self::turn_deadline`] passed at `now`.
    fn turn_overdue(&mut self, now: Instant, out: &mut Actions);
    /// An application-level keep-alive for an idle socket, if the provider closes idle ones.
    fn idle_keepalive(&self) -> Option<&'static str> {
        None
    }
    /// The socket died: the generations in flight, which the wire now forgets and retires.
    fn link_lost(&mut self) -> Vec<Generation>;
    /// Whether to reconnect as soon as the socket dies (off the next turn's path); otherwise
    /// the next turn reconnects.
    fn reconnect_at_once(&self) -> bool {
        true
    }
}

/// Opens the first socket (a refusal is returned to the caller, not retried) and starts the
/// session task.
pub(crate) fn start<W: TtsWire>(
    wire: Result<W, TtsError>,
    params: &TtsParams,
    timeouts: TtsTimeouts,
) -> BoxFuture<'static, Result<TtsSession, TtsError>> {
    let playout = params.playout.clone();
    Box::pin(async move {
        let wire = wire?;
        let (session, commands, output) = TtsSession::channels(playout);
        let mut task = SocketSession {
            wire,
            timeouts,
            ws: None,
            last_connect: Instant::now(),
            output,
            liveness: Liveness::new(timeouts),
            actions: Actions::default(),
        };
        task.connect().await?;
        tokio::spawn(task.run(commands).in_current_span());
        Ok(session)
    })
}

struct SocketSession<W> {
    wire: W,
    timeouts: TtsTimeouts,
    /// `None` after a failure until the next (re)connection.
    ws: Option<Ws>,
    last_connect: Instant,
    output: TtsOutput,
    liveness: Liveness,
    actions: Actions,
}

impl<W: TtsWire> SocketSession<W> {
    async fn run(mut self, mut commands: mpsc::Receiver<TtsCommand>) {
        loop {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => {
                        self.command(command).await;
                        // Commands that came together are handled together (a provider that
                        // flushes in `settle` then sends their text as one synthesis).
                        while let Ok(command) = commands.try_recv() {
                            self.command(command).await;
                        }
                    }
                    None => break,
                },
                frame = ws::next_frame(&mut self.ws) => self.frame(frame).await,
                () = tokio::time::sleep_until(deadline), if self.ws.is_some() => {
                    self.on_deadline().await;
                }
            }
            self.settle().await;
            if self.output.is_closed() {
                break;
            }
        }
        if let Some(socket) = self.ws.take() {
            ws::close(socket).await;
        }
    }

    /// Lets the wire act on the settled state until it has nothing more to do: a step may free
    /// the socket for a waiting turn, and starting that turn may fail and free it again.
    async fn settle(&mut self) {
        loop {
            self.wire.settle(&mut self.actions);
            if self.actions.0.is_empty() {
                return;
            }
            self.execute().await;
        }
    }

    fn deadline(&self) -> Instant {
        let link = self.liveness.deadline(self.wire.busy());
        self.wire
            .turn_deadline()
            .map_or(link, |turn| turn.min(link))
    }

    async fn command(&mut self, command: TtsCommand) {
        match command {
            TtsCommand::Speak {
                generation,
                text,
                last,
            } => self.wire.speak(generation, text, last, &mut self.actions),
            TtsCommand::Cancel { generation } => self.wire.cancel(generation, &mut self.actions),
        }
        self.execute().await;
    }

    async fn frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) {
        let message = match frame {
            Some(Ok(message)) => message,
            Some(Err(tungstenite::Error::Capacity(e))) => {
                return self
                    .link_lost(TtsError::Protocol(format!("oversized message: {e}")))
                    .await;
            }
            Some(Err(e)) => return self.link_lost(TtsError::Closed(e.to_string())).await,
            None => {
                return self
                    .link_lost(TtsError::Closed("the provider closed the socket".into()))
                    .await;
            }
        };
        self.liveness.heard();
        match message {
            Message::Text(text) => {
                self.wire.message(text.as_str(), &mut self.actions);
                self.execute().await;
            }
            Message::Close(frame) => {
                let reason =
                    frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                self.link_lost(TtsError::Closed(format!(
                    "the provider closed the socket{reason}"
                )))
                .await;
            }
            Message::Binary(_) => debug!(provider = W::PROVIDER, "unexpected binary frame skipped"),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }

    async fn on_deadline(&mut self) {
        let now = Instant::now();
        if self.wire.turn_deadline().is_some_and(|turn| turn <= now) {
            self.wire.turn_overdue(now, &mut self.actions);
            return self.execute().await;
        }
        if self.liveness.deadline(self.wire.busy()) > now {
            return;
        }
        match self.liveness.on_deadline() {
            Probe::SendPing => {
                let keepalive = (!self.wire.busy())
                    .then(|| self.wire.idle_keepalive())
                    .flatten();
                let Some(socket) = &mut self.ws else { return };
                let mut result = ws::send(
                    socket,
                    Message::Ping(Default::default()),
                    self.timeouts.send,
                )
                .await;
                if let (Ok(()), Some(keepalive)) = (&result, keepalive) {
                    result = ws::send(socket, Message::text(keepalive), self.timeouts.send).await;
                }
                if let Err(error) = result {
                    self.link_lost(error).await;
                }
            }
            Probe::Dead => {
                let error = TtsError::Stalled(format!(
                    "no answer to a ping within {:?}",
                    self.timeouts.pong
                ));
                self.link_lost(error).await;
            }
        }
    }

    /// Runs the wire's actions in order (see the module doc).
    async fn execute(&mut self) {
        let mut batch = std::mem::take(&mut self.actions.0);
        let mut link_failed = false;
        for action in batch.drain(..) {
            match action {
                Action::Send(text) if !link_failed => {
                    if let Err(error) = self.send(text).await {
                        link_failed = true;
                        self.link_lost(error).await;
                    }
                }
                Action::Send(_) => {}
                Action::Audio(generation, audio) => self.output.audio(generation, audio).await,
                Action::Done(generation) => self.output.done(generation).await,
                Action::Event(event) => self.output.send(event).await,
                Action::LinkLost(error) => {
                    link_failed = true;
                    self.link_lost(error).await;
                }
                Action::Replace => {
                    if let Some(socket) = self.ws.take() {
                        // Nothing more is read from it: close it without waiting.
                        tokio::spawn(ws::close(socket).in_current_span());
                    }
                    if let Err(e) = self.connect().await {
                        warn!(provider = W::PROVIDER, error = %e, "reconnect failed; retrying at the next turn");
                    }
                }
            }
        }
        // Keep the buffer's capacity; a wire never acts while its actions run.
        debug_assert!(self.actions.0.is_empty());
        self.actions.0 = batch;
    }

    /// Sends one message, opening a socket first if there is none.
    async fn send(&mut self, text: String) -> Result<(), TtsError> {
        if self.ws.is_none() {
            self.connect().await?;
        }
        match &mut self.ws {
            Some(socket) => ws::send(socket, Message::text(text), self.timeouts.send).await,
            None => Err(TtsError::Closed("no connection".into())),
        }
    }

    /// The socket is gone or unusable: fail every turn in flight, then reconnect so the next
    /// turn finds a working socket.
    async fn link_lost(&mut self, error: TtsError) {
        let in_flight = self.wire.link_lost();
        warn!(provider = W::PROVIDER, %error, in_flight = in_flight.len(), "tts connection lost");
        // Dropped without a close handshake: the peer may be gone.
        self.ws = None;
        for generation in in_flight {
            self.output
                .send(TtsEvent::Failed {
                    generation: Some(generation),
                    error: error.clone(),
                })
                .await;
        }
        if self.wire.reconnect_at_once()
            && self.last_connect.elapsed() >= RECONNECT_BACKOFF
            && let Err(e) = self.connect().await
        {
            warn!(provider = W::PROVIDER, error = %e, "reconnect failed; retrying at the next turn");
        }
    }

    /// Opens a fresh socket and sends the protocol's greeting on it.
    async fn connect(&mut self) -> Result<(), TtsError> {
        self.last_connect = Instant::now();
        let request = self.wire.request()?;
        let mut socket = ws::connect(
            request,
            ws::socket_config(W::MAX_MESSAGE),
            self.timeouts.connect,
        )
        .await?;
        if let Some(greeting) = self.wire.greeting() {
            ws::send(
                &mut socket,
                Message::text(greeting.to_owned()),
                self.timeouts.send,
            )
            .await?;
        }
        self.ws = Some(socket);
        self.liveness.heard();
        Ok(())
    }
}
