//! What a paced audio output (a call's transport writer) takes: audio of a generation, and marks
//! placed at byte positions within a generation's audio. The TTS session puts its audio here
//! directly and the call's agent its marks, on one channel, so everything queued before a mark
//! is played before it: a mark's position counts from where its generation's audio starts, which
//! is after all audio queued ahead of it.

use bytes::Bytes;

use crate::generation::Generation;

/// One item for the writer, in playback order.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutItem {
    /// Audio of `generation` in the transport's format (any length; not frame aligned).
    Audio {
        generation: Generation,
        audio: Bytes,
    },
    /// Send mark `name` once `at` bytes of `generation`'s audio have been sent. `last`: no more
    /// audio of this generation follows, so a partial last frame goes out padded. `spoken`: the
    /// word this mark ends, told to a far end that shows the agent's text
    /// ([`CallEvent::AgentText`](crate::transport::CallEvent)) just before the mark.
    Mark {
        generation: Generation,
        at: u64,
        name: String,
        last: bool,
        spoken: Option<String>,
    },
}
