//! The messages that join a call's tasks. The reader task turns caller audio into
//! [`MediaEvent`]s (VAD transitions, marks, keys, hang-up) for the agent; the writer takes audio
//! (from the TTS session) and marks (from the agent) as [`PlayoutItem`]s on one data channel,
//! and clears on a separate control channel, so a barge-in never waits behind queued audio.

pub use super::voicemail::AnsweredBy;
pub use crate::audio::playout::PlayoutItem;
use crate::generation::Generation;
pub use crate::telephony::CallControl;

/// What the reader task tells the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The local VAD heard the first of what is probably speech (its onset window): enough to
    /// stop the agent's audio, not yet a turn.
    Onset,
    /// What `Onset` announced did not become speech.
    OnsetWithdrawn,
    /// The local VAD heard the caller start speaking (after its minimum speech time).
    SpeechStarted,
    /// The local VAD heard the caller stop (after its minimum silence time).
    SpeechStopped,
    /// The caller has been silent for the end-of-turn silence (shorter than the VAD's minimum
    /// silence); the reader has already asked the STT for its final.
    Paused,
    /// The caller went on speaking after a pause.
    Resumed,
    /// Playback reached this mark.
    Mark(String),
    /// A keypad digit.
    Dtmf(char),
    /// The caller hung up (or the media socket closed).
    Hangup,
}

/// Orders for the writer that must not wait behind audio.
#[derive(Debug, Clone, PartialEq)]
pub enum WriterControl {
    /// Drop all audio and marks older than `generation`, here and at the far end (barge-in).
    Clear { generation: Generation },
    /// Send what is buffered, then close the stream (the call is over).
    Close,
}

/// Why a call ended; stored as the call's end reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    AssistantEnded,
    Transferred,
    SilenceTimeout,
    MaxDuration,
    HungUpByApi,
    ProviderError,
    ServerShutdown,
    /// An answering machine (or a fax) picked up: the voicemail message was left, or the line
    /// could hear none.
    Voicemail,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::AssistantEnded => "assistant_ended_call",
            EndReason::Transferred => "transferred",
            EndReason::SilenceTimeout => "silence_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::HungUpByApi => "hung_up_by_api",
            EndReason::ProviderError => "provider_error",
            EndReason::ServerShutdown => "server_shutdown",
            EndReason::Voicemail => "voicemail",
        }
    }
}

/// Orders and news from outside the call (REST hang-up, server shutdown, the verdict of
/// answering-machine detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    HangUp,
    Shutdown,
    AnsweredBy(AnsweredBy),
}
