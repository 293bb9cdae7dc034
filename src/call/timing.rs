//! Per-reply timings of a call: the agent stamps each stage of a reply where the event already
//! happens (the same points that feed the stage histograms of `/metrics`), and when the reply is
//! over — heard, interrupted, taken back, or cut by the call's end — the stamps become one
//! [`TurnTiming`] handed to the [`Recorder`]. Nothing here runs per frame: a reply costs a
//! handful of `Instant`s, and its interruptions and tool calls a small vector each.

use std::time::Duration;

use tokio::time::Instant;

use super::first_frames::FirstFrames;
use super::recorder::Recorder;
use crate::generation::Generation;
use crate::store::{TurnInterruption, TurnStamps, TurnTiming, TurnTool};

/// Longest tool arguments kept, in characters.
const MAX_ARGUMENTS: usize = 2000;
/// Longest start of a tool's result kept, in characters.
const MAX_PREVIEW: usize = 500;

/// Where a reply comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The model's answer.
    Model,
    /// A fixed line (greeting, silence prompt, goodbye, voicemail message).
    Line,
}

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Heard,
    Interrupted,
    TakenBack,
    CallEnded,
    /// Another reply replaced it before it was heard (a transfer's failure notice, say).
    Dropped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Heard => "heard",
            Outcome::Interrupted => "interrupted",
            Outcome::TakenBack => "taken_back",
            Outcome::CallEnded => "call_ended",
            Outcome::Dropped => "dropped",
        }
    }
}

/// The reply being timed.
struct Open {
    turn: i64,
    source: Source,
    started: Instant,
    caller_stopped: Option<Instant>,
    stt_final: Option<Instant>,
    llm_request: Option<Instant>,
    llm_first_token: Option<Instant>,
    first_phrase: Option<Instant>,
    tts_first_audio: Option<Instant>,
    /// The generation of the reply's first audio, whose first frame the writer stamped.
    first_generation: Option<Generation>,
    first_mark: Option<Instant>,
    interruptions: Vec<Sound>,
    tools: Vec<TurnTool>,
}

/// The caller's sound over a reply, as it unfolds.
struct Sound {
    onset: Instant,
    cleared: Option<Instant>,
    confirmed: Option<Instant>,
    resumed: Option<Instant>,
    heard: Option<String>,
}

impl Sound {
    /// Neither confirmed nor resumed yet.
    fn open(&self) -> bool {
        self.confirmed.is_none() && self.resumed.is_none()
    }
}

/// A call's reply timings.
pub struct Timings {
    recorder: Recorder,
    first_frames: std::sync::Arc<FirstFrames>,
    /// The call's start: every stamp is stored as milliseconds after it.
    started: Instant,
    turns: i64,
    /// The caller's turn just closed: (their speech ended, the STT's final), for the reply that
    /// answers it.
    caller: Option<(Option<Instant>, Instant)>,
    open: Option<Open>,
}

impl Timings {
    pub fn new(
        recorder: Recorder,
        first_frames: std::sync::Arc<FirstFrames>,
        started: Instant,
    ) -> Self {
        Self {
            recorder,
            first_frames,
            started,
            turns: 0,
            caller: None,
            open: None,
        }
    }

    /// The caller's turn closed now (the STT's final), their speech having ended at `stopped`.
    pub fn caller_turn(&mut self, stopped: Option<Instant>) {
        self.caller = Some((stopped, Instant::now()));
    }

    /// A reply begins (for the model: its request goes out now). A reply still open was
    /// replaced.
    pub fn begin(&mut self, source: Source) {
        self.end(Outcome::Dropped);
        let now = Instant::now();
        let (caller_stopped, stt_final) = match (source, self.caller.take()) {
            (Source::Model, Some((stopped, closed))) => (stopped, Some(closed)),
            _ => (None, None),
        };
        self.turns += 1;
        self.open = Some(Open {
            turn: self.turns,
            source,
            started: caller_stopped.unwrap_or(now),
            caller_stopped,
            stt_final,
            llm_request: (source == Source::Model).then_some(now),
            llm_first_token: None,
            first_phrase: None,
            tts_first_audio: None,
            first_generation: None,
            first_mark: None,
            interruptions: Vec::new(),
            tools: Vec::new(),
        });
    }

    /// The model's first token came (the first of the reply; later rounds' are not stages).
    pub fn first_token(&mut self) {
        if let Some(open) = self.open.as_mut() {
            open.llm_first_token.get_or_insert_with(Instant::now);
        }
    }

    /// The reply's first audio came from the TTS now, `after` its first phrase went out.
    pub fn first_audio(&mut self, after: Duration, generation: Generation) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.tts_first_audio.is_some() {
            return;
        }
        let now = Instant::now();
        open.tts_first_audio = Some(now);
        open.first_phrase = Some(now.checked_sub(after).unwrap_or(now));
        open.first_generation = Some(generation);
    }

    /// A mark of the reply came back from the far end.
    pub fn mark_echoed(&mut self) {
        if let Some(open) = self.open.as_mut().filter(|o| o.tts_first_audio.is_some()) {
            open.first_mark.get_or_insert_with(Instant::now);
        }
    }

    /// The caller's first sound over the reply held it: its audio was cleared now.
    pub fn held(&mut self) {
        if let Some(open) = self.open.as_mut() {
            let now = Instant::now();
            open.interruptions.push(Sound {
                onset: now,
                cleared: Some(now),
                confirmed: None,
                resumed: None,
                heard: None,
            });
        }
    }

    /// Nothing confirmed the interruption: the reply went on.
    pub fn resumed(&mut self) {
        if let Some(last) = self.open.as_mut().and_then(|o| o.interruptions.last_mut())
            && last.open()
        {
            last.resumed = Some(Instant::now());
        }
    }

    /// The caller took the turn: the reply was cut to `heard` now, and is over.
    pub fn interrupted(&mut self, heard: &str) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let now = Instant::now();
        let heard = Some(heard.to_owned());
        match open.interruptions.last_mut() {
            Some(last) if last.open() => {
                last.confirmed = Some(now);
                last.heard = heard;
            }
            // Words (or keys) over the agent with no sound held it first: cleared at the cut.
            _ => open.interruptions.push(Sound {
                onset: now,
                cleared: Some(now),
                confirmed: Some(now),
                resumed: None,
                heard,
            }),
        }
        self.end(Outcome::Interrupted);
    }

    /// A tool of the reply answered now, `took` after it was called.
    pub fn tool(&mut self, name: &str, arguments: &str, result: &str, took: Duration) {
        let now = Instant::now();
        let started = self.ms(now.checked_sub(took).unwrap_or(now));
        if let Some(open) = self.open.as_mut() {
            open.tools
                .push(tool_record(name, arguments, result, started, took));
        }
    }

    /// The reply is over: its timings go to the recorder.
    pub fn end(&mut self, outcome: Outcome) {
        let Some(open) = self.open.take() else {
            return;
        };
        let first_frame = open.first_generation.and_then(|g| self.first_frames.of(g));
        let ms = |at: Option<Instant>| at.map(|at| self.ms(at));
        let mut timing = TurnTiming {
            turn: open.turn,
            source: match open.source {
                Source::Model => "model",
                Source::Line => "line",
            }
            .to_owned(),
            outcome: outcome.as_str().to_owned(),
            started_ms: self.ms(open.started),
            ended_ms: self.ms(Instant::now()),
            stamps: TurnStamps {
                caller_stopped_ms: ms(open.caller_stopped),
                stt_final_ms: ms(open.stt_final),
                llm_request_ms: ms(open.llm_request),
                llm_first_token_ms: ms(open.llm_first_token),
                first_phrase_ms: ms(open.first_phrase),
                tts_first_audio_ms: ms(open.tts_first_audio),
                first_frame_ms: ms(first_frame),
                first_mark_ms: ms(open.first_mark),
            },
            interruptions: open
                .interruptions
                .into_iter()
                .map(|sound| TurnInterruption {
                    onset_ms: self.ms(sound.onset),
                    cleared_ms: ms(sound.cleared),
                    confirmed_ms: ms(sound.confirmed),
                    resumed_ms: ms(sound.resumed),
                    heard: sound.heard,
                })
                .collect(),
            tools: open.tools,
            ..TurnTiming::default()
        };
        timing.derive_stages();
        self.recorder.timing(timing);
    }

    fn ms(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(i64::MAX)
    }
}

/// A tool call as a reply's timings keep it (calls and chats alike).
pub fn tool_record(
    name: &str,
    arguments: &str,
    result: &str,
    started_ms: i64,
    took: Duration,
) -> TurnTool {
    TurnTool {
        name: name.to_owned(),
        arguments: arguments.chars().take(MAX_ARGUMENTS).collect(),
        result_bytes: i64::try_from(result.len()).unwrap_or(i64::MAX),
        result_preview: result.chars().take(MAX_PREVIEW).collect(),
        started_ms,
        duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
        error: tool_error(result),
    }
}

/// The error a tool answered with: every failure (a refused URL, a timeout, an unknown tool, a
/// receiver's error status) reaches the model as `{"error": ...}`.
fn tool_error(result: &str) -> Option<String> {
    if !result.trim_start().starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(result).ok()?;
    match value.get("error")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::recorder::Record;

    fn timings() -> (Timings, tokio::sync::mpsc::Receiver<Record>, Instant) {
        let (recorder, rx) = Recorder::channel();
        let start = Instant::now();
        let frames = std::sync::Arc::new(FirstFrames::new(start));
        (Timings::new(recorder, frames, start), rx, start)
    }

    fn next(rx: &mut tokio::sync::mpsc::Receiver<Record>) -> TurnTiming {
        match rx.try_recv().expect("a record") {
            Record::Timing(t) => *t,
            other => panic!("not a timing: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_stamped_stage_by_stage_and_recorded_once_over() {
        let (mut t, mut rx, start) = timings();
        tokio::time::advance(Duration::from_millis(1000)).await;
        let stopped = Instant::now();
        tokio::time::advance(Duration::from_millis(200)).await;
        t.caller_turn(Some(stopped));
        t.begin(Source::Model);
        tokio::time::advance(Duration::from_millis(300)).await;
        t.first_token();
        tokio::time::advance(Duration::from_millis(150)).await;
        t.first_audio(Duration::from_millis(100), Generation(2));
        t.first_frames
            .sent(Generation(2), Instant::now() + Duration::from_millis(5));
        tokio::time::advance(Duration::from_millis(400)).await;
        t.mark_echoed();
        t.tool(
            "lookup",
            "{}",
            r#"{"error":"timed out"}"#,
            Duration::from_millis(50),
        );
        assert!(
            rx.try_recv().is_err(),
            "nothing is recorded before the reply is over"
        );
        t.end(Outcome::Heard);
        let timing = next(&mut rx);
        assert_eq!(timing.turn, 1);
        assert_eq!(timing.outcome, "heard");
        assert_eq!(timing.started_ms, 1000);
        let s = &timing.stages;
        assert_eq!(
            [
                s.stt_final_ms,
                s.llm_first_token_ms,
                s.first_phrase_ms,
                s.tts_first_audio_ms,
                s.first_frame_ms,
                s.first_mark_ms
            ],
            [
                Some(200),
                Some(300),
                Some(50),
                Some(100),
                Some(5),
                Some(395)
            ]
        );
        // To the first frame: the mark's 395 ms are the first word playing.
        assert_eq!(timing.total_ms, Some(655));
        assert_eq!(timing.tools[0].error.as_deref(), Some("timed out"));
        assert_eq!(timing.tools[0].started_ms, 2000);
        let _ = start;
    }

    #[tokio::test(start_paused = true)]
    async fn a_false_interruption_resumes_and_a_real_one_keeps_what_was_heard() {
        let (mut t, mut rx, _) = timings();
        t.begin(Source::Line);
        t.first_audio(Duration::ZERO, Generation(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        t.held();
        tokio::time::advance(Duration::from_millis(300)).await;
        t.resumed();
        tokio::time::advance(Duration::from_millis(700)).await;
        t.held();
        tokio::time::advance(Duration::from_millis(200)).await;
        t.interrupted("Hello there");
        let timing = next(&mut rx);
        assert_eq!(timing.source, "line");
        assert_eq!(timing.outcome, "interrupted");
        let i = &timing.interruptions;
        assert_eq!(i.len(), 2);
        assert_eq!(
            (i[0].onset_ms, i[0].resumed_ms, i[0].confirmed_ms),
            (500, Some(800), None)
        );
        assert_eq!((i[1].onset_ms, i[1].confirmed_ms), (1500, Some(1700)));
        assert_eq!(i[1].heard.as_deref(), Some("Hello there"));
        t.begin(Source::Line);
        t.begin(Source::Line);
        assert_eq!(next(&mut rx).outcome, "dropped");
    }
}
