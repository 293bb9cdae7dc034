//! The task behind every [`SttSession`]: one per call, owning the provider socket.
//!
//! Why a task of its own: the call pushes 20 ms frames with `try_send` from its hot path and must
//! never wait for the network. The task `select!`s over the call's input, the socket (reads and
//! write progress), and a health tick, so a slow or dead provider shows up as a full input
//! channel (the call drops and counts frames) and, within two ticks, as a stall — never as a
//! call stuck on a socket write.
//!
//! Health: every tick sends a WebSocket ping (neither Deepgram nor Sarvam answers their own
//! keep-alive messages, but every WebSocket server answers pings); a ping unanswered by the next
//! tick, or a write that made no progress for a whole tick, is a stall. The socket is then
//! replaced: the audio the provider had not settled with a final yet ([`Replay`]: since its last
//! final, a short pre-roll while the caller is quiet) is sent first on the new socket, then the
//! audio that arrived meanwhile (a bounded backlog); what cannot be delivered is reported in
//! [`SttEvent::Reconnected`]. Words the provider finalised are never sent again, so none are
//! duplicated.
//!
//! Providers plug in through [`Wire`]: how to open, how to frame audio and control messages,
//! how to read what comes back. Nothing here knows a provider's format.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::sync::mpsc;
use tokio::time::{self, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::replay::Replay;
use super::socket::{self, OpenError, WsStream};
use super::{SttError, SttEvent, SttInput, SttSession};
use crate::audio::AudioFormat;

/// Tuning of an STT session. The defaults suit a phone call on a real provider.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Capacity of the input channel, in messages (50 = one second of 20 ms frames).
    pub input_capacity: usize,
    /// Capacity of the event channel.
    pub event_capacity: usize,
    /// Period of the health check. A ping unanswered by the next tick, or a write stuck for a
    /// whole tick, is a stall: detection takes at most two ticks.
    pub health_tick: Duration,
    /// Send WebSocket pings (liveness). Off only in tests that count frames.
    pub ping: bool,
    /// Send the provider's keep-alive after this long without audio (Deepgram closes an idle
    /// stream after 10 s and recommends a KeepAlive every 3–5 s).
    pub keepalive_after: Duration,
    /// Bound on opening a socket, handshake included.
    pub connect_timeout: Duration,
    /// How long to wait for the provider's last transcripts after the call closed its input.
    pub close_timeout: Duration,
    /// Connection attempts per reconnection, and failed connections in a row tolerated.
    pub reconnect_attempts: u32,
    /// Delay before the second attempt of a reconnection; doubled for each later one.
    pub reconnect_backoff: Duration,
    /// Audio kept while reconnecting, in milliseconds; older audio is dropped (and reported).
    pub backlog_ms: u32,
    /// Unsettled audio (since the provider's last final) kept for a new socket while the caller
    /// speaks, in milliseconds; 0 turns the replay off.
    pub replay_ms: u32,
    /// Unsettled audio kept while the caller is quiet: a pre-roll for a late onset.
    pub replay_preroll_ms: u32,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            input_capacity: 50,
            event_capacity: 32,
            health_tick: Duration::from_secs(1),
            ping: true,
            keepalive_after: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(3),
            close_timeout: Duration::from_secs(2),
            reconnect_attempts: 3,
            reconnect_backoff: Duration::from_millis(100),
            backlog_ms: 1500,
            replay_ms: 8000,
            replay_preroll_ms: 800,
        }
    }
}

/// What a provider message means to the session.
pub(crate) enum Inbound {
    Event(SttEvent),
    Ignore,
    Fail(Failure),
}

/// How a link ended badly.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A new socket may help (network, stall, provider-side close).
    Retry(SttError),
    /// It will not (credentials, a rejected request or stream).
    Fatal(SttError),
}

/// A provider's wire format, as the session needs it.
pub(crate) trait Wire: Send + 'static {
    /// For logs.
    const PROVIDER: &'static str;
    /// The upgrade request (URL with query, credentials). Called for every (re)connection.
    fn request(&self) -> Result<Request, SttError>;
    /// The error for a refused handshake.
    fn refused(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> SttError;
    /// One frame of the call's audio (never empty) as a message.
    fn audio(&mut self, audio: Bytes) -> Message;
    /// "Finalise what you have now."
    fn finalize(&mut self) -> Message;
    /// Keeps an idle stream open.
    fn keepalive(&mut self) -> Message;
    /// "Finish up": the provider sends its last transcripts, then (for some providers) closes.
    fn close_stream(&mut self) -> Message;
    /// A text message from the provider.
    fn inbound(&mut self, text: &str) -> Inbound;
    /// The provider closed the socket while the call was still sending.
    fn closed_by_provider(&self, frame: Option<&CloseFrame>) -> Failure;
    /// Whether everything asked for by `close_stream` has arrived (for providers that do not
    /// close the socket themselves).
    fn drained(&self) -> bool {
        false
    }
    /// A fresh socket was opened: forget per-socket state (pending flushes).
    fn reset(&mut self) {}
}

/// Opens the first socket and starts the session task. Handshake failures are returned here,
/// not retried: the call decides what to do with a provider that refuses it.
pub(crate) async fn start<W: Wire>(
    wire: W,
    format: AudioFormat,
    options: SessionOptions,
) -> Result<SttSession, SttError> {
    let request = wire.request()?;
    let ws = socket::open(request, options.connect_timeout)
        .await
        .map_err(|e| open_error(&wire, e))?;
    let (input_tx, input_rx) = mpsc::channel(options.input_capacity.max(1));
    let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
    let task = SessionTask {
        backlog: Backlog::new(format.bytes_per_ms(options.backlog_ms)),
        replay: Replay::new(
            format.bytes_per_ms(options.replay_ms),
            format.bytes_per_ms(options.replay_preroll_ms),
        ),
        wire,
        format,
        options,
        input: input_rx,
        input_closed: false,
        events: events_tx,
        lost_bytes: 0,
    };
    tokio::spawn(task.run(Link::new(ws)).in_current_span());
    Ok(SttSession {
        input: input_tx,
        events: events_rx,
    })
}

fn open_error<W: Wire>(wire: &W, error: OpenError) -> SttError {
    match error {
        OpenError::Refused {
            status,
            headers,
            body,
        } => wire.refused(status, &headers, &body),
        OpenError::Failed(message) => SttError::Unavailable(message),
    }
}

struct SessionTask<W> {
    wire: W,
    format: AudioFormat,
    options: SessionOptions,
    input: mpsc::Receiver<SttInput>,
    /// The call dropped its sender: finish the stream.
    input_closed: bool,
    events: mpsc::Sender<SttEvent>,
    backlog: Backlog,
    /// Audio written that the provider has not settled with a final.
    replay: Replay,
    /// Audio that may not have been transcribed since the last `Reconnected`.
    lost_bytes: u64,
}

/// How a socket's life ended.
enum LinkEnd {
    /// The call closed its input and the provider finished.
    Finished,
    /// The call dropped its event receiver: nobody listens any more.
    Abandoned,
    Failed(Failure),
}

enum ReconnectEnd {
    GaveUp(SttError),
    Abandoned,
}

impl<W: Wire> SessionTask<W> {
    async fn run(mut self, mut link: Link) {
        // Connections in a row that failed before proving healthy: a provider that accepts
        // and immediately drops us must not be reconnected forever.
        let mut unhealthy_in_a_row = 0u32;
        loop {
            let end = self.pump(&mut link).await;
            match end {
                LinkEnd::Finished => {
                    link.shut_down().await;
                    self.emit(SttEvent::Closed(Ok(()))).await;
                    return;
                }
                LinkEnd::Abandoned => {
                    if !self.input_closed {
                        // Tell the provider to stop billing this stream; best effort.
                        let _ = link.write(self.wire.close_stream());
                    }
                    link.shut_down().await;
                    return;
                }
                LinkEnd::Failed(Failure::Fatal(error)) => {
                    tracing::warn!(provider = W::PROVIDER, %error, "stt stream failed");
                    link.shut_down().await;
                    self.emit(SttEvent::Closed(Err(error))).await;
                    return;
                }
                LinkEnd::Failed(Failure::Retry(error)) => {
                    // What the replay holds is the newest audio written: it covers the writes
                    // the provider may not have read.
                    self.lost_bytes += link
                        .unconfirmed_bytes()
                        .saturating_sub(self.replay.len() as u64);
                    if self.input_closed {
                        // The call is finishing: a new socket could not bring back the tail.
                        self.emit(SttEvent::Closed(Err(error))).await;
                        return;
                    }
                    unhealthy_in_a_row = if link.healthy {
                        1
                    } else {
                        unhealthy_in_a_row + 1
                    };
                    if unhealthy_in_a_row > self.options.reconnect_attempts {
                        self.emit(SttEvent::Closed(Err(error))).await;
                        return;
                    }
                    tracing::info!(provider = W::PROVIDER, %error, "stt link lost; reconnecting");
                    drop(link);
                    match self.reconnect(error).await {
                        Ok(new_link) => {
                            link = new_link;
                            let frame_bytes = self.format.bytes_per_ms(20);
                            let replayed = self.replay.take_frames(frame_bytes);
                            if !replayed.is_empty() {
                                tracing::info!(
                                    provider = W::PROVIDER,
                                    replay_ms = self
                                        .format
                                        .duration_ms(replayed.iter().map(Bytes::len).sum()),
                                    "stt audio the lost link had not settled sent again"
                                );
                            }
                            self.backlog.prepend_audio(replayed);
                            let lost_ms = self.format.duration_ms(self.lost_bytes as usize);
                            self.lost_bytes = 0;
                            if !self.emit(SttEvent::Reconnected { lost_ms }).await {
                                return;
                            }
                        }
                        Err(ReconnectEnd::GaveUp(error)) => {
                            tracing::warn!(provider = W::PROVIDER, %error, "stt reconnection failed");
                            self.emit(SttEvent::Closed(Err(error))).await;
                            return;
                        }
                        Err(ReconnectEnd::Abandoned) => return,
                    }
                }
            }
        }
    }

    /// Moves audio to the socket and events to the call until the link ends.
    async fn pump(&mut self, link: &mut Link) -> LinkEnd {
        while let Some(item) = self.backlog.pop() {
            if let Err(end) = self.send_input(link, item) {
                return end;
            }
        }
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let close_deadline = time::sleep_until(far);
        tokio::pin!(close_deadline);
        if self.input_closed
            && let Err(end) = self.begin_close(link, close_deadline.as_mut())
        {
            return end;
        }
        let tick_period = self.options.health_tick;
        let mut tick = time::interval_at(Instant::now() + tick_period, tick_period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                biased;
                socket = poll_fn(|cx| link.poll_socket(cx)) => {
                    if let Some(end) = self.on_socket(link, socket).await {
                        return end;
                    }
                }
                input = self.input.recv(), if !self.input_closed => match input {
                    Some(item) => {
                        if let Err(end) = self.send_input(link, item) {
                            return end;
                        }
                    }
                    None => {
                        self.input_closed = true;
                        if let Err(end) = self.begin_close(link, close_deadline.as_mut()) {
                            return end;
                        }
                    }
                },
                now = tick.tick() => {
                    if let Some(end) = self.on_tick(link, now) {
                        return end;
                    }
                }
                () = &mut close_deadline, if self.input_closed => {
                    tracing::debug!(provider = W::PROVIDER, "stt provider did not finish in time");
                    return LinkEnd::Finished;
                }
            }
        }
    }

    async fn on_socket(&mut self, link: &mut Link, socket: SocketEvent) -> Option<LinkEnd> {
        let message = match socket {
            SocketEvent::Message(message) => message,
            SocketEvent::Ended(error) => {
                if self.input_closed {
                    return Some(LinkEnd::Finished);
                }
                let reason = match error {
                    Some(e) => format!("socket error: {e}"),
                    None => "socket closed without a close frame".to_owned(),
                };
                return Some(LinkEnd::Failed(Failure::Retry(SttError::Closed(reason))));
            }
        };
        match message {
            Message::Text(text) => {
                link.healthy = true;
                match self.wire.inbound(&text) {
                    Inbound::Event(event) => {
                        if let SttEvent::Transcript { is_final: true, .. } = &event {
                            self.replay.settled();
                        }
                        if !self.emit(event).await {
                            return Some(LinkEnd::Abandoned);
                        }
                    }
                    Inbound::Ignore => {}
                    Inbound::Fail(failure) => return Some(LinkEnd::Failed(failure)),
                }
                if self.input_closed && self.wire.drained() {
                    return Some(LinkEnd::Finished);
                }
            }
            Message::Pong(_) => link.pong(),
            // tungstenite queued the pong; make sure it is flushed.
            Message::Ping(_) => link.flush_pending = true,
            Message::Close(frame) => {
                if self.input_closed {
                    return Some(LinkEnd::Finished);
                }
                return Some(LinkEnd::Failed(
                    self.wire.closed_by_provider(frame.as_ref()),
                ));
            }
            Message::Binary(data) => {
                tracing::debug!(
                    provider = W::PROVIDER,
                    len = data.len(),
                    "ignoring binary message"
                );
            }
            Message::Frame(_) => {}
        }
        None
    }

    fn on_tick(&mut self, link: &mut Link, now: Instant) -> Option<LinkEnd> {
        if self.events.is_closed() {
            return Some(LinkEnd::Abandoned);
        }
        if link.awaiting_pong {
            return Some(LinkEnd::Failed(Failure::Retry(SttError::Stalled(format!(
                "no pong within {} ms",
                self.options.health_tick.as_millis()
            )))));
        }
        if link.flush_pending && !link.flushed_since_tick {
            link.stuck_ticks += 1;
            if link.stuck_ticks >= 2 {
                return Some(LinkEnd::Failed(Failure::Retry(SttError::Stalled(
                    "provider stopped reading (writes made no progress)".to_owned(),
                ))));
            }
        } else {
            link.stuck_ticks = 0;
        }
        link.flushed_since_tick = false;

        if self.options.ping {
            if let Err(e) = link.write(Message::Ping(Bytes::from_static(b"vb"))) {
                return Some(link_error(e));
            }
            link.awaiting_pong = true;
            link.bytes_at_ping = link.sent_bytes;
        }
        if link.sent_since_tick {
            link.sent_since_tick = false;
            link.last_sent = now;
        } else if now.duration_since(link.last_sent) >= self.options.keepalive_after
            && !self.input_closed
        {
            if let Err(e) = link.write(self.wire.keepalive()) {
                return Some(link_error(e));
            }
            link.last_sent = now;
        }
        None
    }

    fn send_input(&mut self, link: &mut Link, item: SttInput) -> Result<(), LinkEnd> {
        match item {
            SttInput::Audio(audio) => {
                if audio.is_empty() {
                    // An empty frame means end-of-stream to Deepgram: never send one.
                    return Ok(());
                }
                let len = audio.len() as u64;
                // Kept before it is written: a write that fails is sent again on the new link.
                self.replay.push(&audio);
                match link.write(self.wire.audio(audio)) {
                    Ok(()) => {
                        link.sent_bytes += len;
                        link.sent_since_tick = true;
                        Ok(())
                    }
                    Err(e) => {
                        if !self.replay.keeps_audio() {
                            self.lost_bytes += len;
                        }
                        Err(link_error(e))
                    }
                }
            }
            SttInput::Finalize => link.write(self.wire.finalize()).map_err(link_error),
            SttInput::Speaking(speaking) => {
                self.replay.set_speaking(speaking);
                Ok(())
            }
        }
    }

    fn begin_close(
        &mut self,
        link: &mut Link,
        deadline: Pin<&mut time::Sleep>,
    ) -> Result<(), LinkEnd> {
        deadline.reset(Instant::now() + self.options.close_timeout);
        link.write(self.wire.close_stream()).map_err(link_error)
    }

    /// Opens a new socket, buffering the call's audio meanwhile.
    async fn reconnect(&mut self, cause: SttError) -> Result<Link, ReconnectEnd> {
        let mut last_error = cause;
        let mut backoff = self.options.reconnect_backoff;
        for attempt in 0..self.options.reconnect_attempts.max(1) {
            if attempt > 0 {
                self.buffer_while(time::sleep(backoff)).await?;
                backoff = backoff.saturating_mul(2);
            }
            let request = self.wire.request().map_err(ReconnectEnd::GaveUp)?;
            // Boxed: the connect future is ~11 KB and only needed while reconnecting; inline, it
            // would sit in every session task for the whole call.
            let opening = Box::pin(socket::open(request, self.options.connect_timeout));
            let opened = self.buffer_while(opening).await?;
            match opened {
                Ok(ws) => {
                    self.wire.reset();
                    return Ok(Link::new(ws));
                }
                Err(error) => {
                    let error = open_error(&self.wire, error);
                    if !error.is_retryable() {
                        return Err(ReconnectEnd::GaveUp(error));
                    }
                    tracing::debug!(provider = W::PROVIDER, %error, attempt, "stt reconnect attempt failed");
                    last_error = error;
                }
            }
        }
        Err(ReconnectEnd::GaveUp(last_error))
    }

    /// Runs `future` while keeping the input channel drained into the backlog.
    async fn buffer_while<F: Future>(&mut self, future: F) -> Result<F::Output, ReconnectEnd> {
        tokio::pin!(future);
        loop {
            if self.events.is_closed() {
                return Err(ReconnectEnd::Abandoned);
            }
            tokio::select! {
                biased;
                output = &mut future => return Ok(output),
                input = self.input.recv(), if !self.input_closed => match input {
                    Some(item) => self.lost_bytes += self.backlog.push(item),
                    None => self.input_closed = true,
                },
            }
        }
    }

    /// Delivers an event; `false` when the call no longer listens.
    async fn emit(&mut self, event: SttEvent) -> bool {
        self.events.send(event).await.is_ok()
    }
}

fn link_error(error: WsError) -> LinkEnd {
    let error = match error {
        WsError::WriteBufferFull(_) => SttError::Stalled("provider stopped reading".to_owned()),
        other => SttError::Closed(format!("socket error: {other}")),
    };
    LinkEnd::Failed(Failure::Retry(error))
}

enum SocketEvent {
    Message(Message),
    /// The socket ended: `None` without a close frame or error.
    Ended(Option<WsError>),
}

/// One socket and its health bookkeeping.
struct Link {
    ws: WsStream,
    /// A write is not yet flushed to the kernel.
    flush_pending: bool,
    /// A flush completed since the last tick (the write path is moving).
    flushed_since_tick: bool,
    stuck_ticks: u32,
    awaiting_pong: bool,
    /// Audio bytes written on this socket.
    sent_bytes: u64,
    /// `sent_bytes` when the outstanding ping was sent.
    bytes_at_ping: u64,
    /// Audio known to have reached the provider (it answered a ping sent after it).
    confirmed_bytes: u64,
    sent_since_tick: bool,
    last_sent: Instant,
    /// The provider answered something on this socket.
    healthy: bool,
}

impl Link {
    fn new(ws: WsStream) -> Self {
        Self {
            ws,
            flush_pending: false,
            flushed_since_tick: false,
            stuck_ticks: 0,
            awaiting_pong: false,
            sent_bytes: 0,
            bytes_at_ping: 0,
            confirmed_bytes: 0,
            sent_since_tick: false,
            last_sent: Instant::now(),
            healthy: false,
        }
    }

    /// Queues a message; with a zero write buffer it goes to the kernel at once and never
    /// waits. A provider that stops reading makes the queue grow until `WriteBufferFull`.
    fn write(&mut self, message: Message) -> Result<(), WsError> {
        Pin::new(&mut self.ws).start_send(message)?;
        self.flush_pending = true;
        Ok(())
    }

    fn pong(&mut self) {
        self.awaiting_pong = false;
        self.healthy = true;
        self.confirmed_bytes = self.bytes_at_ping;
    }

    fn unconfirmed_bytes(&self) -> u64 {
        self.sent_bytes - self.confirmed_bytes
    }

    /// Makes write progress and reads the next message.
    fn poll_socket(&mut self, cx: &mut Context<'_>) -> Poll<SocketEvent> {
        if self.flush_pending {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.flush_pending = false;
                    self.flushed_since_tick = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(SocketEvent::Ended(Some(e))),
                Poll::Pending => {}
            }
        }
        match Pin::new(&mut self.ws).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => Poll::Ready(SocketEvent::Message(message)),
            Poll::Ready(Some(Err(e))) => Poll::Ready(SocketEvent::Ended(Some(e))),
            Poll::Ready(None) => Poll::Ready(SocketEvent::Ended(None)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Closes politely, without waiting long for a provider that is gone.
    async fn shut_down(mut self) {
        let _ = time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
    }
}

/// The call's input held while the socket is being replaced.
struct Backlog {
    items: VecDeque<SttInput>,
    bytes: usize,
    max_bytes: usize,
}

impl Backlog {
    fn new(max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Keeps `item`, dropping the oldest audio beyond the bound; returns the bytes dropped.
    fn push(&mut self, item: SttInput) -> u64 {
        if let SttInput::Audio(audio) = &item {
            self.bytes += audio.len();
        }
        self.items.push_back(item);
        let mut dropped = 0u64;
        while self.bytes > self.max_bytes {
            let Some(position) = self
                .items
                .iter()
                .position(|i| matches!(i, SttInput::Audio(_)))
            else {
                break;
            };
            if let Some(SttInput::Audio(audio)) = self.items.remove(position) {
                self.bytes -= audio.len();
                dropped += audio.len() as u64;
            }
        }
        dropped
    }

    /// Puts replayed audio ahead of everything held: it is older. Not bounded by `max_bytes`
    /// (the replay has its own bound).
    fn prepend_audio(&mut self, frames: Vec<Bytes>) {
        for frame in frames.into_iter().rev() {
            self.bytes += frame.len();
            self.items.push_front(SttInput::Audio(frame));
        }
    }

    fn pop(&mut self) -> Option<SttInput> {
        let item = self.items.pop_front()?;
        if let SttInput::Audio(audio) = &item {
            self.bytes -= audio.len();
        }
        if self.items.is_empty() {
            // Give the reconnect's memory back; it is rare and calls are many.
            self.items = VecDeque::new();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(len: usize) -> SttInput {
        SttInput::Audio(Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn backlog_drops_oldest_audio_beyond_its_bound() {
        let mut backlog = Backlog::new(480);
        assert_eq!(backlog.push(audio(160)), 0);
        assert_eq!(backlog.push(SttInput::Finalize), 0);
        assert_eq!(backlog.push(audio(160)), 0);
        assert_eq!(backlog.push(audio(160)), 0);
        assert_eq!(backlog.push(audio(160)), 160, "oldest frame dropped");
        assert!(
            matches!(backlog.pop(), Some(SttInput::Finalize)),
            "control kept"
        );
        let mut frames = 0;
        while let Some(item) = backlog.pop() {
            assert!(matches!(item, SttInput::Audio(_)));
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(backlog.bytes, 0);
    }
}
