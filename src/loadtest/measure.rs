//! Turns one simulated call's [`CallerReport`] into latency samples.
//!
//! Times are the caller's: when it sent a frame, when a message arrived. A frame sent at `t`
//! carries the 20 ms of audio that ended at `t`, as a phone's would, so audio position `p` of
//! an utterance whose first frame went out at `s` is on the wire at `s - 20 ms + p`.
//!
//! - **Voice-to-voice**: end of the caller's voiced audio → first agent audio after it.
//! - **Added latency**: the same, minus what the turn's end and the fakes are configured to
//!   take. The turn ends when `endpointing` ms of silence have *arrived* — the earlier of our
//!   VAD's end-of-turn silence (it then asks the STT for its final) and the fake STT's own
//!   endpointing (it listens to the audio; it is not a timer) — i.e. on the frame that carries
//!   audio position `voiced_end + endpointing`; the STT's final comes `stt_final` later, the LLM's first token
//!   `llm_first_token` after the request and the TTS's first audio `tts_first_byte` after the
//!   text. What is left is ours: forwarding audio, turn logic, phrase splitting, TTS framing,
//!   pacing, and the sockets in between.
//! - **Barge-in reaction**: onset of speech over the agent → the `clear` that stops playback.
//! - **False interruptions** (the cough and the backchannel steps): onset of the sound → the
//!   `clear` (the agent stops at the sound; for a cough the VAD's model should not even do
//!   that), and end of its voiced audio → the agent's audio again (it resumed). A wrongful cut
//!   is no agent audio after it before the caller's next speech, or a `clear` after the agent
//!   went on (the STT's late words cut it after all).
//! - **Frame lateness**: within one stretch of agent audio (between caller utterances, `clear`s
//!   and the server's end-of-reply marks), how far each frame arrived behind the playout clock started by the first. A
//!   frame more than 20 ms late means the caller's earpiece ran dry: a gap.

use std::time::Duration;

use crate::call::heard::{MarkPoint, parse_mark};
use crate::sim::caller::{CallerReport, SpeechRecord};
use crate::sim::suite::SimOptions;

use super::script::LoadScript;

const FRAME_MS: f64 = 20.0;
/// μ-law at 8 kHz.
const BYTES_PER_MS: f64 = 8.0;

/// What one call measured.
#[derive(Debug, Clone, Default)]
pub struct CallMeasures {
    pub voice_to_voice_ms: Vec<f64>,
    pub added_ms: Vec<f64>,
    /// Utterances the agent never answered before the caller spoke again or the call ended.
    pub unanswered: u32,
    pub barge_in_ms: Option<f64>,
    /// The caller talked over the agent and no `clear` came.
    pub barge_in_missed: bool,
    /// The backchannel's onset → the clear that stopped the agent.
    pub false_stop_ms: Option<f64>,
    /// The backchannel's voiced end → the agent's audio again.
    pub resumed_ms: Option<f64>,
    /// The cough's onset → the clear, if the cough stopped the agent at all.
    pub cough_stop_ms: Option<f64>,
    /// The agent was talking when the caller coughed (so the cough was over it).
    pub coughed_over_agent: bool,
    /// False interruptions after which the agent's reply was lost.
    pub wrongful_cuts: u32,
    pub frame_lateness_ms: Vec<f64>,
    pub late_frames: u64,
    /// Where each late frame fell: ms from the start of its stretch of agent audio.
    pub late_frame_offsets_ms: Vec<f64>,
    pub frames: u64,
}

/// Measures one call. `endpointing_ms` is the silence that ends a turn (see the module doc).
pub fn measure(
    report: &CallerReport,
    script: &LoadScript,
    delays: &SimOptions,
    endpointing_ms: u64,
) -> CallMeasures {
    let mut out = CallMeasures::default();
    for (i, speech) in report.speech.iter().enumerate() {
        let next_speech = report.speech.get(i + 1).map(|s| s.started_at);
        if script.backchannel_step == Some(speech.step) && speech.ended_at.is_some() {
            let f = false_interruption(report, speech, &script.backchannel, next_speech);
            out.false_stop_ms = f.stop_ms;
            out.resumed_ms = f.resumed_ms;
            out.wrongful_cuts += u32::from(f.wrongful_cut);
            continue;
        }
        if script.cough_step == speech.step && speech.ended_at.is_some() {
            let f = false_interruption(report, speech, &script.cough, next_speech);
            out.cough_stop_ms = f.stop_ms;
            out.coughed_over_agent = f.over_agent;
            out.wrongful_cuts += u32::from(f.wrongful_cut);
            continue;
        }
        let Some(utterance) = script.utterance_at(speech.step) else {
            continue;
        };
        if speech.ended_at.is_none() {
            continue;
        }
        let wire = |position_ms: u64| wire_time(speech, position_ms);
        // The frame that carries `voiced_end + endpointing`: where the turn's end is decided.
        let endpoint_position = (utterance.voiced_end_ms + endpointing_ms).div_ceil(20) * 20;
        let endpoint_at = wire(endpoint_position);
        let voiced_end_at = wire(utterance.voiced_end_ms);
        let reply = report
            .media
            .iter()
            .find(|m| m.at > endpoint_at)
            .filter(|m| next_speech.is_none_or(|next| m.at < next));
        match reply {
            Some(reply) => {
                out.voice_to_voice_ms
                    .push(ms_between(voiced_end_at, reply.at));
                out.added_ms
                    .push(ms_between(endpoint_at, reply.at) - delays.provider_delay_ms() as f64);
            }
            None => out.unanswered += 1,
        }
        if speech.step == script.barge_in_step {
            let onset_at = wire(utterance.onset_ms);
            let cut = report
                .clears
                .iter()
                .find(|c| c.at >= onset_at && speech.ended_at.is_some_and(|e| c.at <= e));
            match cut {
                Some(clear) => out.barge_in_ms = Some(ms_between(onset_at, clear.at)),
                None => out.barge_in_missed = true,
            }
        }
    }
    frame_lateness(report, &mut out);
    out
}

/// How the agent took a sound over its reply that was not a turn.
#[derive(Debug, Default)]
struct FalseInterruption {
    over_agent: bool,
    stop_ms: Option<f64>,
    resumed_ms: Option<f64>,
    wrongful_cut: bool,
}

/// How the agent took an "uh-huh" or a cough over its reply: at most stopped at it, then went
/// on.
fn false_interruption(
    report: &CallerReport,
    speech: &SpeechRecord,
    sound: &super::script::Utterance,
    next_speech: Option<Duration>,
) -> FalseInterruption {
    let onset_at = wire_time(speech, sound.onset_ms);
    let voiced_end_at = wire_time(speech, sound.voiced_end_ms);
    let window = Duration::from_millis(200);
    let mut out = FalseInterruption {
        // Agent audio arriving around the sound's onset: it was talked over.
        over_agent: report
            .media
            .iter()
            .any(|m| m.at + window >= onset_at && m.at <= onset_at + window),
        ..Default::default()
    };
    if !out.over_agent {
        return out;
    }
    out.stop_ms = report
        .clears
        .iter()
        .find(|c| c.at >= onset_at && c.at <= voiced_end_at + Duration::from_secs(1))
        .map(|clear| ms_between(onset_at, clear.at));
    let before_next = |at: Duration| next_speech.is_none_or(|next| at < next);
    let again = report
        .media
        .iter()
        .find(|m| m.at > voiced_end_at && before_next(m.at));
    match again {
        Some(media) => {
            out.resumed_ms = out
                .stop_ms
                .is_some()
                .then(|| ms_between(voiced_end_at, media.at));
            // Cut after all once it went on (late words from the STT).
            out.wrongful_cut = report
                .clears
                .iter()
                .any(|c| c.at > media.at && before_next(c.at));
        }
        None => out.wrongful_cut = true,
    }
    out
}

/// Lateness of every agent frame against the playout clock of its stretch of audio.
fn frame_lateness(report: &CallerReport, out: &mut CallMeasures) {
    // A stretch of agent audio ends where the caller speaks or the server marks the end of
    // its reply (`g<N>.end`): a reply that starts 30 s later (a silence prompt) is not late.
    let mut boundaries: Vec<Duration> = report.speech.iter().map(|s| s.started_at).collect();
    boundaries.extend(
        report
            .marks
            .iter()
            .filter(|m| matches!(parse_mark(&m.name), Some((_, MarkPoint::End))))
            .map(|m| m.received_at),
    );
    boundaries.sort_unstable();
    let mut boundaries = boundaries.into_iter().peekable();
    let mut anchor: Option<(Duration, u32)> = None;
    let mut stretch_start: Option<Duration> = None;
    let mut bytes_since_anchor = 0u64;
    for media in &report.media {
        // Any boundary passed since the previous frame starts a new stretch.
        let mut new_stretch = false;
        while boundaries.next_if(|&b| b <= media.at).is_some() {
            new_stretch = true;
        }
        out.frames += 1;
        match anchor {
            Some((at, clears)) if !new_stretch && clears == media.after_clears => {
                let due = at.as_secs_f64() * 1000.0 + bytes_since_anchor as f64 / BYTES_PER_MS;
                let lateness = (media.at.as_secs_f64() * 1000.0 - due).max(0.0);
                out.frame_lateness_ms.push(lateness);
                if lateness > FRAME_MS {
                    // The earpiece ran dry; playout restarts with this frame.
                    out.late_frames += 1;
                    out.late_frame_offsets_ms
                        .push(ms_between(stretch_start.unwrap_or(at), media.at));
                    anchor = Some((media.at, media.after_clears));
                    bytes_since_anchor = 0;
                }
            }
            _ => {
                anchor = Some((media.at, media.after_clears));
                stretch_start = Some(media.at);
                bytes_since_anchor = 0;
            }
        }
        bytes_since_anchor += u64::from(media.bytes);
    }
}

/// When audio position `position_ms` of an utterance was on the wire.
fn wire_time(speech: &SpeechRecord, position_ms: u64) -> Duration {
    (speech.started_at + Duration::from_millis(position_ms))
        .saturating_sub(Duration::from_millis(FRAME_MS as u64))
}

fn ms_between(from: Duration, to: Duration) -> f64 {
    (to.as_secs_f64() - from.as_secs_f64()) * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::caller::{ClearRecord, MediaRecord};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn media(at: u64, after_clears: u32) -> MediaRecord {
        MediaRecord {
            at: ms(at),
            bytes: 160,
            offset: 0,
            after_clears,
        }
    }

    #[test]
    fn a_turn_answered_exactly_on_the_fakes_delays_adds_nothing() {
        let script = LoadScript::new(2);
        let step = script.barge_in_step;
        let u = script.utterance_at(step).unwrap().clone();
        let started = 1000;
        let speech = SpeechRecord {
            step,
            started_at: ms(started),
            ended_at: Some(ms(started + u.audio.duration().as_millis() as u64)),
        };
        let delays = SimOptions::reference();
        let endpoint = started - 20 + (u.voiced_end_ms + 300).div_ceil(20) * 20;
        let reply_at = endpoint + delays.provider_delay_ms() + 3;
        let onset = started - 20 + u.onset_ms;
        let report = CallerReport {
            speech: vec![speech],
            media: vec![
                media(500, 0),
                media(520, 0),
                media(reply_at, 1),
                media(reply_at + 20, 1),
            ],
            clears: vec![ClearRecord {
                at: ms(onset + 120),
                dropped_bytes: 0,
                offset: 0,
            }],
            ..Default::default()
        };
        let m = measure(&report, &script, &delays, 300);
        assert_eq!(m.added_ms.len(), 1);
        assert!((m.added_ms[0] - 3.0).abs() < 1e-6, "{:?}", m.added_ms);
        let v2v = (reply_at - (started - 20 + u.voiced_end_ms)) as f64;
        assert!((m.voice_to_voice_ms[0] - v2v).abs() < 1e-6);
        assert!((m.barge_in_ms.unwrap() - 120.0).abs() < 1e-6);
        assert_eq!((m.frames, m.late_frames, m.unanswered), (4, 0, 0));
    }

    #[test]
    fn a_frame_behind_the_playout_clock_is_a_gap() {
        let report = CallerReport {
            // 0, 20, 40 on time; 100 is 40 ms late; 120 on time after playout restarted.
            media: vec![
                media(0, 0),
                media(20, 0),
                media(40, 0),
                media(100, 0),
                media(120, 0),
            ],
            ..Default::default()
        };
        let mut out = CallMeasures::default();
        frame_lateness(&report, &mut out);
        assert_eq!(out.late_frames, 1);
        assert_eq!(out.frame_lateness_ms, vec![0.0, 0.0, 40.0, 0.0]);
    }

    #[test]
    fn a_new_reply_after_an_end_mark_is_not_late() {
        let report = CallerReport {
            media: vec![
                media(0, 0),
                media(20, 0),
                media(30_000, 0),
                media(30_020, 0),
            ],
            marks: vec![crate::sim::caller::MarkRecord {
                name: "g3.end".into(),
                received_at: ms(21),
                offset: 320,
                echoed_at: None,
                cleared: false,
            }],
            ..Default::default()
        };
        let mut out = CallMeasures::default();
        frame_lateness(&report, &mut out);
        assert_eq!((out.late_frames, out.frame_lateness_ms.len()), (0, 2));
    }

    #[test]
    fn a_reply_cut_after_it_went_on_is_a_wrongful_cut() {
        let script = LoadScript::new(2);
        let cough = &script.cough;
        let started = 10_000;
        let speech = SpeechRecord {
            step: script.cough_step,
            started_at: ms(started),
            ended_at: Some(ms(started + cough.audio.duration().as_millis() as u64)),
        };
        let onset = started - 20 + cough.onset_ms;
        let end = started - 20 + cough.voiced_end_ms;
        let report = |clears: Vec<u64>| CallerReport {
            speech: vec![speech.clone()],
            media: vec![media(onset - 20, 0), media(onset, 0), media(end + 100, 1)],
            clears: clears
                .into_iter()
                .map(|at| ClearRecord {
                    at: ms(at),
                    dropped_bytes: 0,
                    offset: 0,
                })
                .collect(),
            ..Default::default()
        };
        let delays = SimOptions::reference();
        // Stopped at the sound, then went on: not a cut.
        let m = measure(&report(vec![onset + 100]), &script, &delays, 200);
        assert_eq!((m.coughed_over_agent, m.wrongful_cuts), (true, 0));
        assert!((m.cough_stop_ms.unwrap() - 100.0).abs() < 1e-6);
        // Went on, then cut by the STT's late words: a cut.
        let m = measure(&report(vec![onset + 100, end + 400]), &script, &delays, 200);
        assert_eq!(m.wrongful_cuts, 1);
    }

    #[test]
    fn unanswered_when_the_caller_speaks_again_first() {
        let script = LoadScript::new(2);
        let report = CallerReport {
            speech: vec![SpeechRecord {
                step: script.barge_in_step,
                started_at: ms(0),
                ended_at: Some(ms(2000)),
            }],
            ..Default::default()
        };
        let m = measure(&report, &script, &SimOptions::reference(), 300);
        assert_eq!((m.unanswered, m.barge_in_missed), (1, true));
    }
}
