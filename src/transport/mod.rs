//! The seam between a media-stream protocol and the call: [`MediaSource`] and [`MediaSink`].
//! A protocol (the browser widget's here in `browser.rs`; each telephony provider's in its
//! folder under `src/telephony/`) turns its wire format into [`Inbound`] events and the call's
//! outbound frames, marks and clears into its wire format. The call session only ever sees these
//! types, so it knows nothing of any provider.

pub mod browser;
pub mod inactivity;
pub mod wire_text;

use std::future::Future;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

use crate::audio::AudioFormat;

/// What the caller's side sends, decoded from the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Caller audio in the transport's native format (any length; normally 20 ms).
    Audio(Bytes),
    /// Playback reached this mark: all audio sent before it has been played (or was cleared).
    Mark(String),
    /// A keypad digit.
    Dtmf(char),
    /// The caller hung up or the stream was stopped.
    Hangup,
}

/// What the call tells a far end that can show it (the browser widget); telephony ignores it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// What the STT heard the caller say (`is_final`: this stretch will not change any more).
    Transcript { text: String, is_final: bool },
    /// Words of the agent's reply, sent as their audio is sent (at their playback marks).
    AgentText(String),
    /// Products the agent chose to show (`recommend_products`), as the catalog has them.
    Recommendation(Vec<crate::catalog::Product>),
    /// The call is over (sent just before the stream closes).
    End { reason: &'static str },
}

/// A transport failure. Bad input never ends a call; these end only the socket they name.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the media socket is closed")]
    Closed,
    #[error("media socket error: {0}")]
    Socket(String),
}

/// The receiving half of a media stream.
pub trait MediaSource: Send + 'static {
    /// The next event; `None` once the socket is gone. Malformed frames are logged and skipped
    /// inside the transport, never returned.
    fn next(&mut self) -> impl Future<Output = Option<Inbound>> + Send;
}

/// The sending half of a media stream. Sends only queue their message; [`flush`](Self::flush)
/// writes everything queued, so the writer pays one write (one syscall, one wake-up of the far
/// end) for a batch of frames and the marks between them.
pub trait MediaSink: Send + 'static {
    /// The audio format the far end plays (and sends).
    fn format(&self) -> AudioFormat;
    /// Queues one frame of audio in [`format`](Self::format).
    fn send_audio(
        &mut self,
        frame: &[u8],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Queues a request to be told (an [`Inbound::Mark`]) when everything sent before it has
    /// been played.
    fn send_mark(&mut self, name: &str) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Queues a request to drop everything sent but not yet played (barge-in).
    fn clear(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Ends the stream, after everything queued.
    fn close(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Whether the far end shows [`CallEvent`]s; when not, the call does not make them.
    fn wants_events(&self) -> bool {
        false
    }
    /// Queues news of the call for the far end. Telephony has no way to show it: the default
    /// drops it.
    fn send_event(
        &mut self,
        event: &CallEvent,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let _ = event;
        async { Ok(()) }
    }
}

/// Queues `message` on a media socket without writing it (see [`MediaSink`]).
pub(crate) async fn queue_message(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
) -> Result<(), TransportError> {
    sink.feed(message)
        .await
        .map_err(|e| TransportError::Socket(e.to_string()))
}

/// Writes what was queued on a media socket.
pub(crate) async fn flush_socket(
    sink: &mut SplitSink<WebSocket, Message>,
) -> Result<(), TransportError> {
    sink.flush()
        .await
        .map_err(|e| TransportError::Socket(e.to_string()))
}

/// The close frame of a call that ended normally.
pub(crate) fn call_ended_frame() -> CloseFrame {
    CloseFrame {
        code: close_code::NORMAL,
        reason: Utf8Bytes::from_static("call ended"),
    }
}

/// Sends `frame` and closes the sending half of a media socket (the far end's answer is read by
/// the receiving half, so the socket is not reset under its last frames).
pub(crate) async fn close_socket(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: CloseFrame,
) -> Result<(), TransportError> {
    let _ = sink.send(Message::Close(Some(frame))).await;
    sink.close()
        .await
        .map_err(|e| TransportError::Socket(e.to_string()))
}
