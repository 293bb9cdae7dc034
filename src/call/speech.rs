//! The agent's voice: a reply's text becomes TTS utterances, its words become playback marks,
//! and the marks that come back tell what the caller has heard. This is the one place that
//! decides which generation is current: a new reply, a new utterance within a reply (a TTS
//! context cannot stay open while a tool runs) and a barge-in each move to the next one, and
//! the TTS (cancel) and the writer (clear) are told to drop anything older.
//!
//! The audio itself never passes through here: the TTS session puts it straight into the
//! writer's queue and says only that a generation started, its word timings and its end. Marks
//! go into the same queue, behind the audio they follow; what does not fit waits in a small
//! backlog, in order, and is never dropped (a lost end mark would leave a reply, and an ending
//! call, waiting for an echo that never comes).

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::sync::mpsc::OwnedPermit;
use tokio::time::Instant;

use super::heard::{MarkPoint, SpokenWords, mark_name, parse_mark};
use super::io::{PlayoutItem, WriterControl};
use crate::agent::phrases::PhraseSplitter;
use crate::audio::AudioFormat;
use crate::generation::Generation;
use crate::tts::{TtsCommand, TtsError, TtsEvent, WordTiming};

/// What a TTS event or a mark echo means for the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Spoken {
    Nothing,
    /// The reply's first audio went to the writer, `after` its first phrase went to the TTS.
    FirstAudio {
        after: std::time::Duration,
        /// The generation the audio is of (the writer stamps its first frame).
        generation: Generation,
    },
    /// The caller has heard the whole reply.
    Heard,
    /// The TTS failed; what was produced will still play.
    Failed(TtsError),
}

/// What was said of a reply that is cut off or dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// The words whose marks came back.
    pub heard: String,
    /// Whether any of its audio reached the writer.
    pub audible: bool,
    /// When its first audio went out.
    pub first_audio_at: Option<Instant>,
}

/// One reply's speech.
#[derive(Debug)]
struct Reply {
    /// Generations from the first utterance's to the current one's.
    first: Generation,
    current: Generation,
    splitter: PhraseSplitter,
    /// Every phrase given to the TTS, joined.
    said: String,
    /// The current utterance is open at the TTS (phrases sent, not closed yet).
    open: bool,
    /// The current generation's utterance was closed: the next phrase needs a new one.
    closed_current: bool,
    /// Utterances closed whose end has not come back from the TTS yet.
    pending: u32,
    /// Phrases held until the previous utterance is done.
    queued: VecDeque<String>,
    /// Text of the current utterance, for marks estimated without word timings.
    utterance_text: String,
    /// The TTS gave word timings for the current utterance.
    timed: bool,
    /// Words of the current utterance the TTS gave timings for (their audio was made).
    utterance_words: usize,
    /// The current utterance's audio has started.
    utterance_started: bool,
    /// An utterance of this reply failed at the TTS and its unsaid words were sent again: a
    /// second failure is not retried.
    retried: bool,
    /// Audio bytes of the current utterance, once the TTS is done with it.
    utterance_bytes: u64,
    first_phrase_at: Option<Instant>,
    first_audio_at: Option<Instant>,
    words: SpokenWords,
    /// Nothing more will be said: the end mark follows the last utterance's audio.
    complete: bool,
    end_marked: bool,
    /// Stopped at the caller's first sound over it, not cut yet: its audio is gone, its text
    /// waits (see [`Speech::hold`]).
    held: bool,
}

impl Reply {
    fn owns(&self, generation: Generation) -> bool {
        (self.first..=self.current).contains(&generation)
    }

    fn audible(&self) -> bool {
        self.first_audio_at.is_some()
    }

    fn ready_for_end_mark(&self) -> bool {
        self.complete && !self.held && !self.open && self.pending == 0 && self.queued.is_empty()
    }
}

/// The words of the failed current utterance that the TTS did not make, taken out of what the
/// reply says (they are said again, and must not be in it twice; or, after the one retry, they
/// were never heard); `None` when nothing was left unmade: everything was made, or the TTS gives
/// no word timings and some audio came (which words it held is then unknown, and saying the
/// whole utterance again would repeat what was heard).
fn take_unsaid(reply: &mut Reply) -> Option<String> {
    if reply.utterance_text.is_empty() {
        return None;
    }
    let made = match (reply.timed, reply.utterance_started) {
        (true, _) => reply.utterance_words,
        (false, false) => 0,
        (false, true) => return None,
    };
    let words: Vec<&str> = reply.utterance_text.split_whitespace().collect();
    if made >= words.len() {
        return None;
    }
    let unsaid = words[made..].join(" ");
    let kept = words[..made].join(" ");
    let before = reply
        .said
        .strip_suffix(reply.utterance_text.as_str())
        .map(|s| s.trim_end().to_owned());
    if let Some(mut said) = before {
        if !said.is_empty() && !kept.is_empty() {
            said.push(' ');
        }
        said.push_str(&kept);
        reply.said = said;
    }
    reply.utterance_text = kept;
    Some(unsaid)
}

/// The agent's voice in a call.
pub struct Speech {
    generation: Generation,
    reply: Option<Reply>,
    tts: mpsc::Sender<TtsCommand>,
    writer: mpsc::Sender<PlayoutItem>,
    writer_control: mpsc::Sender<WriterControl>,
    backlog: VecDeque<PlayoutItem>,
    /// Bytes per second of the transport's audio (word times become byte positions).
    bytes_per_second: f64,
    /// The far end shows the agent's words as they are played.
    show_words: bool,
    /// Another voice can take over when this one fails a reply twice (see `take_voice_switch`).
    fallback_available: bool,
    /// Waiting for the other voice: phrases are held, not sent.
    switching: bool,
    /// The agent has yet to be told to switch.
    switch_requested: bool,
}

impl Speech {
    pub fn new(
        tts: mpsc::Sender<TtsCommand>,
        writer: mpsc::Sender<PlayoutItem>,
        writer_control: mpsc::Sender<WriterControl>,
        format: AudioFormat,
        show_words: bool,
    ) -> Self {
        Self {
            generation: Generation(0),
            reply: None,
            tts,
            writer,
            writer_control,
            backlog: VecDeque::new(),
            bytes_per_second: f64::from(format.sample_rate)
                * format.encoding.bytes_per_sample() as f64,
            show_words,
            fallback_available: false,
            switching: false,
            switch_requested: false,
        }
    }

    /// The assistant has a fallback voice: words the call's own voice fails to say after its
    /// retry wait for it instead of being dropped.
    pub fn offer_fallback(&mut self) {
        self.fallback_available = true;
    }

    /// Whether the voice just failed a reply twice and the words wait for the fallback voice
    /// (asked once).
    pub fn take_voice_switch(&mut self) -> bool {
        std::mem::take(&mut self.switch_requested)
    }

    /// The fallback voice is connected: it says what waited, and everything after.
    pub fn use_voice(&mut self, tts: mpsc::Sender<TtsCommand>) {
        self.tts = tts;
        self.switching = false;
        self.send_queued();
        self.place_end_mark();
    }

    /// No other voice after all: what waited goes to the call's own voice once more.
    pub fn keep_voice(&mut self) {
        self.switching = false;
        self.send_queued();
        self.place_end_mark();
    }

    /// Starts speaking a new reply; whatever the previous one still had to say is dropped.
    pub fn begin(&mut self) {
        self.drop_reply();
        self.generation = self.generation.next();
        self.reply = Some(Reply {
            first: self.generation,
            current: self.generation,
            splitter: PhraseSplitter::new(),
            said: String::new(),
            open: false,
            closed_current: false,
            pending: 0,
            queued: VecDeque::new(),
            utterance_text: String::new(),
            timed: false,
            utterance_words: 0,
            utterance_started: false,
            retried: false,
            utterance_bytes: 0,
            first_phrase_at: None,
            first_audio_at: None,
            words: SpokenWords::default(),
            complete: false,
            end_marked: false,
            held: false,
        });
    }

    /// A piece of the reply's text, as the model streams it: spoken phrase by phrase.
    pub fn say(&mut self, text: &str) {
        let phrases = match self.reply.as_mut() {
            Some(reply) => reply.splitter.push(text),
            None => return,
        };
        for phrase in phrases {
            self.speak(phrase);
        }
    }

    /// The rest of the current utterance is said: what the splitter holds goes out and the
    /// utterance closes (before a tool runs, or at the end of the reply).
    pub fn pause(&mut self) {
        let rest = self.reply.as_mut().and_then(|r| r.splitter.finish());
        if let Some(rest) = rest {
            self.speak(rest);
        }
        self.close_utterance();
    }

    /// Nothing more will be said in this reply.
    pub fn complete(&mut self) {
        self.pause();
        if let Some(reply) = self.reply.as_mut() {
            reply.complete = true;
        }
        self.place_end_mark();
    }

    /// Plays audio that is not speech (DTMF tones) as a reply of its own: straight into the
    /// writer's queue, then its end mark, so the call knows when it has been heard.
    pub fn tones(&mut self, audio: bytes::Bytes) {
        self.begin();
        let generation = self.generation;
        let bytes = audio.len() as u64;
        self.queue(PlayoutItem::Audio { generation, audio });
        if let Some(reply) = self.reply.as_mut() {
            reply.first_phrase_at = Some(Instant::now());
            reply.first_audio_at = Some(Instant::now());
            reply.utterance_bytes = bytes;
            reply.complete = true;
        }
        self.place_end_mark();
    }

    /// Everything given to the TTS in this reply.
    pub fn said(&self) -> &str {
        self.reply.as_ref().map_or("", |r| r.said.as_str())
    }

    /// A reply is being spoken (or waits for its end to be heard).
    pub fn active(&self) -> bool {
        self.reply.is_some()
    }

    /// Some of the reply's audio has gone to the caller.
    pub fn audible(&self) -> bool {
        self.reply.as_ref().is_some_and(Reply::audible)
    }

    /// The caller is hearing the agent right now (or would be, but for a hold).
    pub fn speaking(&self) -> bool {
        self.reply
            .as_ref()
            .is_some_and(|r| r.held || (r.audible() && !r.words.finished()))
    }

    /// The reply is held (see [`Self::hold`]).
    pub fn held(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| r.held)
    }

    /// The caller's first sound over the agent: stop the audio now, here and at the far end,
    /// but keep the reply. If the caller's words then confirm the interruption it is cut
    /// ([`Self::cut`]); if they do not (a cough, an "uh-huh"), it goes on from the first word
    /// the caller did not hear ([`Self::resume`]). Answers whether a reply was held.
    pub fn hold(&mut self) -> bool {
        let next = self.generation.next();
        let Some(reply) = self
            .reply
            .as_mut()
            .filter(|r| !r.held && r.audible() && !r.words.finished())
        else {
            return false;
        };
        let _ = self
            .writer_control
            .try_send(WriterControl::Clear { generation: next });
        let _ = self.tts.try_send(TtsCommand::Cancel {
            generation: reply.current,
        });
        self.generation = next;
        self.backlog.clear();
        // Older generations are no longer this reply's: their late events and the marks the
        // far end echoes for the cleared audio tell nothing about what was heard.
        reply.first = next;
        reply.current = next;
        reply.held = true;
        reply.open = false;
        reply.closed_current = false;
        reply.pending = 0;
        reply.end_marked = false;
        reply.words.forget_unheard();
        true
    }

    /// A held reply goes on: what the caller did not hear is said again in a new utterance,
    /// followed by what the model said meanwhile.
    pub fn resume(&mut self) {
        let Some(reply) = self.reply.as_mut().filter(|r| r.held) else {
            return;
        };
        reply.held = false;
        let heard = reply.words.heard_count();
        let unheard: Vec<&str> = reply.said.split_whitespace().skip(heard).collect();
        let unheard = unheard.join(" ");
        // `speak` appends what it sends again.
        reply.said = reply
            .said
            .split_whitespace()
            .take(heard)
            .collect::<Vec<_>>()
            .join(" ");
        reply.utterance_text.clear();
        reply.utterance_bytes = 0;
        reply.timed = false;
        let waiting: Vec<String> = reply.queued.drain(..).collect();
        let complete = reply.complete;
        if !unheard.is_empty() {
            self.speak(unheard);
        }
        for phrase in waiting {
            self.speak(phrase);
        }
        if complete {
            self.close_utterance();
            self.place_end_mark();
        }
    }

    pub fn first_audio_at(&self) -> Option<Instant> {
        self.reply.as_ref().and_then(|r| r.first_audio_at)
    }

    /// Barge-in: stop the agent's audio now, here and at the far end, and answer what was
    /// heard. The clear goes first: every millisecond here is audio the caller talks over.
    pub fn cut(&mut self) -> Option<Cut> {
        let reply = self.reply.take()?;
        // A held reply was cleared and cancelled at the caller's first sound, and nothing of
        // it has been sent since.
        if !reply.held {
            let next = self.generation.next();
            let _ = self
                .writer_control
                .try_send(WriterControl::Clear { generation: next });
            let _ = self.tts.try_send(TtsCommand::Cancel {
                generation: reply.current,
            });
            self.generation = next;
        }
        self.backlog.clear();
        Some(Cut {
            heard: reply.words.heard_text(),
            audible: reply.audible(),
            first_audio_at: reply.first_audio_at,
        })
    }

    /// Ends the reply without a clear (the call is ending, or nobody heard it yet): the TTS
    /// stops, and what was queued plays out.
    pub fn stop(&mut self) -> Option<Cut> {
        let reply = self.reply.take()?;
        let _ = self.tts.try_send(TtsCommand::Cancel {
            generation: reply.current,
        });
        Some(Cut {
            heard: reply.words.heard_text(),
            audible: reply.audible(),
            first_audio_at: reply.first_audio_at,
        })
    }

    /// The generation the call is on (for logs).
    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn heard_words(&self) -> usize {
        self.reply.as_ref().map_or(0, |r| r.words.heard_count())
    }

    // ----- what comes back ------------------------------------------------------------------

    /// A TTS event.
    pub fn on_tts(&mut self, event: TtsEvent) -> Spoken {
        match event {
            TtsEvent::Started { generation } => self.on_started(generation),
            // Only a session without a writer of its own sends audio with its events; a call
            // never runs one so.
            TtsEvent::Audio { generation, .. } => {
                tracing::error!(%generation, "tts audio reached the agent; it is not played");
                Spoken::Nothing
            }
            TtsEvent::Words { generation, words } => {
                self.on_words(generation, &words);
                Spoken::Nothing
            }
            TtsEvent::Done {
                generation,
                audio_bytes,
            } => {
                self.on_done(generation, audio_bytes);
                Spoken::Nothing
            }
            TtsEvent::Failed { generation, error } => {
                let owned =
                    generation.is_none_or(|g| self.reply.as_ref().is_some_and(|r| r.owns(g)));
                if owned && let Some(reply) = self.reply.as_mut() {
                    // What was produced will play, and how much audio came is unknown: the end
                    // mark goes after whatever was queued. The words it did not make are said
                    // again once, in a new utterance ahead of anything queued.
                    let current = generation.is_none_or(|g| g == reply.current);
                    let unsaid = if current { take_unsaid(reply) } else { None };
                    reply.pending = reply.pending.saturating_sub(1);
                    reply.open = false;
                    reply.utterance_bytes = u64::MAX;
                    match unsaid {
                        // Said again once, ahead of anything queued.
                        Some(unsaid) if !reply.retried => {
                            reply.retried = true;
                            reply.closed_current = true;
                            reply.queued.push_front(unsaid);
                            metrics::counter!(crate::metrics::TTS_RETRIES).increment(1);
                        }
                        // The retry failed too: another voice says them, once it is connected.
                        Some(unsaid) if self.fallback_available => {
                            self.fallback_available = false;
                            self.switching = true;
                            self.switch_requested = true;
                            reply.closed_current = true;
                            reply.queued.push_front(unsaid);
                        }
                        // No other voice: those words are lost, and out of the transcript.
                        Some(unsaid) => {
                            tracing::warn!(unsaid, "tts failed twice; words not said");
                        }
                        None => {}
                    }
                    self.send_queued();
                    self.place_end_mark();
                }
                Spoken::Failed(error)
            }
        }
    }

    /// A mark came back from the far end: everything before it has been played.
    pub fn on_mark(&mut self, name: &str) -> Spoken {
        let Some((generation, point)) = parse_mark(name) else {
            return Spoken::Nothing;
        };
        let Some(reply) = self.reply.as_mut().filter(|r| r.owns(generation)) else {
            return Spoken::Nothing;
        };
        reply.words.heard_up_to(point);
        if point == MarkPoint::End {
            Spoken::Heard
        } else {
            Spoken::Nothing
        }
    }

    /// The reply was heard to the end: answers what it said and when it was first heard.
    pub fn finish(&mut self) -> Option<(String, Option<Instant>)> {
        let reply = self.reply.take()?;
        Some((reply.said, reply.first_audio_at))
    }

    // ----- the writer's backlog ----------------------------------------------------------------

    /// Marks wait for room in the writer's queue.
    pub fn backlog_waiting(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// The writer's queue, to wait for room in (`reserve_owned`).
    pub fn writer(&self) -> &mpsc::Sender<PlayoutItem> {
        &self.writer
    }

    /// Room came free in the writer's queue (`None`: the writer is gone, the call is ending).
    pub fn on_room(&mut self, permit: Option<OwnedPermit<PlayoutItem>>) {
        match permit {
            Some(permit) => {
                if let Some(item) = self.backlog.pop_front() {
                    permit.send(item);
                }
            }
            None => self.backlog.clear(),
        }
    }

    // ----- inside ---------------------------------------------------------------------------

    /// Sends a phrase to the TTS, or holds it until the previous utterance is done.
    fn speak(&mut self, phrase: String) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if reply.held || self.switching || (!reply.open && reply.pending > 0) {
            reply.queued.push_back(phrase);
            return;
        }
        if !reply.open {
            if reply.closed_current {
                // The TTS closed this generation's context: the next utterance is a new one.
                self.generation = self.generation.next();
                reply.current = self.generation;
                reply.closed_current = false;
                reply.utterance_bytes = 0;
                reply.utterance_text.clear();
                reply.timed = false;
                reply.utterance_words = 0;
                reply.utterance_started = false;
            }
            reply.open = true;
        }
        reply.first_phrase_at.get_or_insert_with(Instant::now);
        for text in [&mut reply.said, &mut reply.utterance_text] {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&phrase);
        }
        let command = TtsCommand::Speak {
            generation: reply.current,
            text: format!("{phrase} "),
            last: false,
        };
        if self.tts.try_send(command).is_err() {
            tracing::error!("tts command queue full; phrase dropped");
        }
    }

    fn close_utterance(&mut self) {
        let Some(reply) = self.reply.as_mut().filter(|r| r.open && !r.held) else {
            return;
        };
        reply.open = false;
        reply.closed_current = true;
        reply.pending += 1;
        let command = TtsCommand::Speak {
            generation: reply.current,
            text: String::new(),
            last: true,
        };
        if self.tts.try_send(command).is_err() {
            tracing::error!("tts command queue full; utterance not closed");
        }
    }

    fn on_started(&mut self, generation: Generation) -> Spoken {
        let Some(reply) = self.reply.as_mut().filter(|r| r.current == generation) else {
            // Stale: an interrupted or older utterance.
            return Spoken::Nothing;
        };
        reply.utterance_started = true;
        if reply.first_audio_at.is_some() {
            return Spoken::Nothing;
        }
        let now = Instant::now();
        reply.first_audio_at = Some(now);
        Spoken::FirstAudio {
            after: reply
                .first_phrase_at
                .map_or(std::time::Duration::ZERO, |p| now - p),
            generation,
        }
    }

    fn on_words(&mut self, generation: Generation, words: &[WordTiming]) {
        let bytes_per_second = self.bytes_per_second;
        let show = self.show_words;
        let Some(reply) = self.reply.as_mut().filter(|r| r.current == generation) else {
            return;
        };
        reply.timed = true;
        reply.utterance_words += words.len();
        // Word times count from the start of this generation's audio, as do the writer's marks.
        let marks: Vec<PlayoutItem> = words
            .iter()
            .map(|word| {
                let count = reply.words.push(&word.word);
                PlayoutItem::Mark {
                    generation,
                    at: (f64::from(word.end.max(0.0)) * bytes_per_second) as u64,
                    name: mark_name(generation, MarkPoint::Words(count)),
                    last: false,
                    spoken: show.then(|| word.word.clone()),
                }
            })
            .collect();
        for mark in marks {
            self.queue(mark);
        }
    }

    fn on_done(&mut self, generation: Generation, audio_bytes: u64) {
        let Some(reply) = self.reply.as_mut().filter(|r| r.owns(generation)) else {
            return;
        };
        reply.pending = reply.pending.saturating_sub(1);
        if generation == reply.current {
            reply.utterance_bytes = audio_bytes;
            if !reply.timed {
                self.estimate_word_marks(generation);
            }
        }
        self.send_queued();
        self.place_end_mark();
    }

    /// Phrases held while the previous utterance finished go out now.
    fn send_queued(&mut self) {
        if self.switching {
            return;
        }
        let Some(reply) = self.reply.as_mut().filter(|r| r.pending == 0 && !r.held) else {
            return;
        };
        if reply.queued.is_empty() {
            return;
        }
        let phrases: Vec<String> = reply.queued.drain(..).collect();
        let complete = reply.complete;
        for phrase in phrases {
            self.speak(phrase);
        }
        if complete {
            self.close_utterance();
        }
    }

    /// For a TTS without word timings: once the utterance's audio is complete, each word's mark
    /// goes at the byte position proportional to its place in the text. Playback is still ahead
    /// (synthesis runs faster than real time), so the echoes still tell what was heard, to
    /// within the speaking rate's unevenness.
    fn estimate_word_marks(&mut self, generation: Generation) {
        let show = self.show_words;
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        let total_chars = reply.utterance_text.chars().count().max(1) as u64;
        let total_bytes = reply.utterance_bytes;
        let mut chars_so_far = 0u64;
        let words: Vec<String> = reply
            .utterance_text
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut marks = Vec::with_capacity(words.len());
        for word in words {
            chars_so_far += word.chars().count() as u64 + 1;
            let count = reply.words.push(&word);
            marks.push(PlayoutItem::Mark {
                generation,
                at: total_bytes * chars_so_far.min(total_chars) / total_chars,
                name: mark_name(generation, MarkPoint::Words(count)),
                last: false,
                spoken: show.then_some(word),
            });
        }
        for mark in marks {
            self.queue(mark);
        }
    }

    /// Once nothing more will be said, a mark at the end of the audio tells when it was heard.
    fn place_end_mark(&mut self) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if reply.end_marked || !reply.ready_for_end_mark() {
            return;
        }
        reply.end_marked = true;
        let mark = PlayoutItem::Mark {
            generation: reply.current,
            at: reply.utterance_bytes,
            name: mark_name(reply.current, MarkPoint::End),
            last: true,
            spoken: None,
        };
        self.queue(mark);
    }

    /// Drops a reply's audio everywhere it may be: the TTS, the writer, the far end.
    fn drop_reply(&mut self) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let _ = self.tts.try_send(TtsCommand::Cancel {
            generation: reply.current,
        });
        if reply.audible() && !reply.words.finished() {
            let _ = self.writer_control.try_send(WriterControl::Clear {
                generation: reply.current.next(),
            });
        }
    }

    fn queue(&mut self, item: PlayoutItem) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(item);
            return;
        }
        match self.writer.try_send(item) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(item)) => self.backlog.push_back(item),
        }
    }
}

#[cfg(test)]
#[path = "speech_tests.rs"]
mod tests;
