//! What one simulated call saw, with times relative to the moment the caller started dialling
//! the WebSocket. Tests assert on it ("the agent spoke first", "clear came within N ms of the
//! caller's speech"); the load generator aggregates it.

use std::time::Duration;

/// Twilio's error code for a malformed or unsupported message from the server.
pub const PROTOCOL_ERROR: u32 = 31924;

/// Why the simulated call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerEnd {
    /// The script hung up (`stop` sent, socket closed).
    ScriptHangUp,
    /// The call was hung up from outside (REST hang-up, the fake ending the call): `stop` sent.
    RemoteHangUp,
    /// The stream was stopped for a TwiML redirect (a transfer): `stop` sent.
    StreamRedirected,
    /// The server closed the WebSocket.
    ServerClosed,
    /// The longest allowed call was reached: `stop` sent.
    MaxDuration,
    /// The WebSocket could not be opened (Twilio: 31920 when the handshake is not a 101).
    ConnectFailed(String),
    /// The connection broke.
    Transport(String),
}

/// A step of the script as it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub index: usize,
    pub kind: &'static str,
    pub started_at: Duration,
    /// `None` if the call ended during the step.
    pub ended_at: Option<Duration>,
    /// A wait step gave up at its timeout.
    pub timed_out: bool,
}

/// One stretch of caller speech (a `say` step) as it went out on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechRecord {
    pub step: usize,
    /// When its first frame was sent.
    pub started_at: Duration,
    /// When its last frame was sent (`None` if the call ended first).
    pub ended_at: Option<Duration>,
}

/// One `media` message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    pub at: Duration,
    pub bytes: u32,
    /// Stream position of its first byte (index into [`CallerReport::outbound_audio`]).
    pub offset: u64,
    /// How many `clear`s came before it.
    pub after_clears: u32,
}

/// A `mark` from the server and its echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRecord {
    pub name: String,
    pub received_at: Duration,
    /// Stream position the mark stands at.
    pub offset: u64,
    pub echoed_at: Option<Duration>,
    /// Echoed because a `clear` dropped the audio before it.
    pub cleared: bool,
}

/// A `clear` from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearRecord {
    pub at: Duration,
    /// Queued audio it dropped, in bytes (8 per ms).
    pub dropped_bytes: u64,
    /// Stream position it cut at.
    pub offset: u64,
}

/// A message Twilio would have refused (error 31924).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub at: Duration,
    pub code: u32,
    pub detail: String,
}

/// Everything one simulated call saw.
#[derive(Debug, Clone, Default)]
pub struct CallerReport {
    pub call_sid: String,
    pub stream_sid: String,
    /// When the WebSocket handshake completed.
    pub connected_at: Option<Duration>,
    pub ended_at: Duration,
    pub end: Option<CallerEnd>,
    /// `media` frames the caller sent (speech and silence).
    pub frames_sent: u64,
    /// DTMF digits sent, with their times.
    pub dtmf_sent: Vec<(Duration, char)>,
    pub steps: Vec<StepRecord>,
    pub speech: Vec<SpeechRecord>,
    /// When the last step finished (the caller then stays on the line, silent).
    pub script_finished_at: Option<Duration>,
    /// Every `media` from the server (when frames are recorded).
    pub media: Vec<MediaRecord>,
    /// The server's audio, μ-law, by stream position (when audio is recorded).
    pub outbound_audio: Vec<u8>,
    /// Bytes of server audio received.
    pub outbound_bytes: u64,
    /// Bytes of server audio actually played to the caller (not dropped by a clear).
    pub played_bytes: u64,
    pub first_media_at: Option<Duration>,
    pub last_media_at: Option<Duration>,
    pub marks: Vec<MarkRecord>,
    pub clears: Vec<ClearRecord>,
    pub protocol_errors: Vec<ProtocolError>,
    /// The latest any 20 ms tick ran after its schedule (the caller's own lag, not the server's).
    pub tick_lag_max: Duration,
    /// Ticks that ran more than [`LATE_TICK`](super::LATE_TICK) late.
    pub late_ticks: u64,
}

impl CallerReport {
    /// When the first agent audio arrived.
    pub fn first_agent_audio_at(&self) -> Option<Duration> {
        self.first_media_at
    }

    /// When the caller first started speaking.
    pub fn first_speech_at(&self) -> Option<Duration> {
        self.speech.first().map(|s| s.started_at)
    }

    /// The first `clear` at or after `t`.
    pub fn first_clear_after(&self, t: Duration) -> Option<&ClearRecord> {
        self.clears.iter().find(|c| c.at >= t)
    }

    /// The first `media` that arrived at or after `t` (needs recorded frames).
    pub fn first_media_after(&self, t: Duration) -> Option<&MediaRecord> {
        self.media.iter().find(|m| m.at >= t)
    }

    /// The mark named `name` (the first, if the server reused a name).
    pub fn mark(&self, name: &str) -> Option<&MarkRecord> {
        self.marks.iter().find(|m| m.name == name)
    }

    /// The recorded server audio between two stream positions (needs recorded audio).
    pub fn audio_between(&self, from: u64, to: u64) -> &[u8] {
        let len = self.outbound_audio.len() as u64;
        let (from, to) = (from.min(len) as usize, to.min(len) as usize);
        &self.outbound_audio[from..to.max(from)]
    }

    /// The recorded server audio that arrived at or after `t` (needs frames and audio).
    pub fn audio_after(&self, t: Duration) -> &[u8] {
        match self.first_media_after(t) {
            Some(m) => self.audio_between(m.offset, u64::MAX),
            None => &[],
        }
    }

    /// The script step `index` as it ran.
    pub fn step(&self, index: usize) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.index == index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_find_by_time_and_position() {
        let ms = Duration::from_millis;
        let report = CallerReport {
            media: vec![
                MediaRecord {
                    at: ms(100),
                    bytes: 2,
                    offset: 0,
                    after_clears: 0,
                },
                MediaRecord {
                    at: ms(300),
                    bytes: 2,
                    offset: 2,
                    after_clears: 1,
                },
            ],
            outbound_audio: vec![1, 2, 3, 4],
            clears: vec![ClearRecord {
                at: ms(200),
                dropped_bytes: 0,
                offset: 2,
            }],
            ..Default::default()
        };
        assert_eq!(report.audio_after(ms(150)), [3, 4]);
        assert_eq!(report.audio_after(ms(400)), [] as [u8; 0]);
        assert_eq!(report.first_clear_after(ms(150)).unwrap().offset, 2);
        assert!(report.first_clear_after(ms(250)).is_none());
        assert_eq!(report.audio_between(1, 99), [2, 3, 4]);
        assert_eq!(report.audio_between(9, 3), [] as [u8; 0]);
    }
}
