//! The agent alone, with every peer played by the test through channels: the caller's media
//! events, the STT, the TTS, the LLM (scripted) and the writer. Time is tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::agent::interruption::InterruptionSettings;
use crate::call::recorder::Record;
use crate::generation::Generation;
use crate::llm::scripted::{ScriptedLlm, text_reply, tool_reply};
use crate::llm::{ChatMessage, LlmEvent};
use crate::store::{TurnRecord, TurnTiming};
use crate::stt::SttInput;
use crate::tts::{TtsCommand, TtsEvent, WordTiming};

/// The test's side of every channel.
struct Harness {
    media: mpsc::Sender<MediaEvent>,
    stt: mpsc::Sender<SttEvent>,
    _stt_input: mpsc::Receiver<SttInput>,
    tts_commands: mpsc::Receiver<TtsCommand>,
    tts_events: mpsc::Sender<TtsEvent>,
    /// The TTS session's own way into the writer's queue (audio never passes the agent).
    tts_audio: mpsc::Sender<PlayoutItem>,
    writer: mpsc::Receiver<PlayoutItem>,
    writer_control: mpsc::Receiver<WriterControl>,
    control: mpsc::Sender<Control>,
    turns: mpsc::Receiver<Record>,
    /// Reply timings the recorder was given, as turns were read.
    timings: Vec<TurnTiming>,
    /// Provider events the recorder was given, as turns were read.
    provider_events: Vec<crate::store::ProviderEvent>,
    /// Where the writer (played by the test) stamps first frames.
    first_frames: Arc<crate::call::first_frames::FirstFrames>,
    events: mpsc::Receiver<CallEvent>,
    llm: Arc<ScriptedLlm>,
    agent: JoinHandle<CallOutcome>,
}

fn setup() -> CallSetup {
    CallSetup {
        call_id: "call-test".into(),
        system_prompt: "You are a test agent.".into(),
        start_instruction: Some("Hello there, how can I help?".into()),
        first_message_mode: FirstMessageMode::AssistantSpeaksFirst,
        silence_timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(600),
        interruption: InterruptionSettings::default(),
        turn: crate::agent::end_of_turn::TurnSettings::default(),
        keypad: crate::agent::keypad::KeypadSettings::default(),
        toolbox: Toolbox::new(vec![], true),
        temperature: 0.5,
        max_tokens: 100,
        output_format: AudioFormat::MULAW_8K,
        events: false,
        voicemail_message: None,
        llm_apology: LLM_FAILED.to_owned(),
    }
}

fn start(setup: CallSetup, replies: Vec<Vec<LlmEvent>>) -> Harness {
    start_with(setup, ScriptedLlm::new(replies))
}

fn start_with(setup: CallSetup, llm: Arc<ScriptedLlm>) -> Harness {
    let (media_tx, media_rx) = mpsc::channel(64);
    let (stt_tx, stt_rx) = mpsc::channel(64);
    let (stt_input_tx, stt_input_rx) = mpsc::channel(64);
    let (tts_cmd_tx, tts_cmd_rx) = mpsc::channel(64);
    let (tts_ev_tx, tts_ev_rx) = mpsc::channel(64);
    let (writer_tx, writer_rx) = mpsc::channel(64);
    let (writer_ctl_tx, writer_ctl_rx) = mpsc::channel(8);
    let (control_tx, control_rx) = mpsc::channel(4);
    let (events_tx, events_rx) = mpsc::channel(64);
    let (recorder, turns) = Recorder::channel();
    let first_frames = Arc::new(crate::call::first_frames::FirstFrames::new(
        tokio::time::Instant::now(),
    ));
    let io = CallIo {
        media: media_rx,
        stt: SttSession {
            input: stt_input_tx,
            events: stt_rx,
        },
        tts: TtsSession {
            commands: tts_cmd_tx,
            events: tts_ev_rx,
        },
        llm: llm.clone(),
        writer: writer_tx.clone(),
        writer_control: writer_ctl_tx,
        events: events_tx,
        control: control_rx,
        recorder,
        first_frames: Arc::clone(&first_frames),
        egress: crate::egress::EgressClient::new(crate::egress::AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        })
        .unwrap(),
        call_control: None,
        // The scripted model makes no retries of its own to tell of.
        llm_notices: mpsc::channel(1).1,
        fallback_voice: None,
    };
    let agent = tokio::spawn(run_agent(setup, io));
    Harness {
        media: media_tx,
        stt: stt_tx,
        _stt_input: stt_input_rx,
        tts_commands: tts_cmd_rx,
        tts_events: tts_ev_tx,
        tts_audio: writer_tx,
        writer: writer_rx,
        writer_control: writer_ctl_rx,
        control: control_tx,
        turns,
        timings: Vec::new(),
        provider_events: Vec::new(),
        first_frames,
        events: events_rx,
        llm,
        agent,
    }
}

impl Harness {
    /// What a call's TTS session does with a chunk: the agent hears that the generation
    /// started, the audio goes straight into the writer's queue.
    async fn audio(&self, generation: Generation, bytes: usize) {
        self.tts_events
            .send(TtsEvent::Started { generation })
            .await
            .unwrap();
        self.tts_audio
            .send(PlayoutItem::Audio {
                generation,
                audio: Bytes::from(vec![0x55u8; bytes]),
            })
            .await
            .unwrap();
    }

    /// Reads TTS commands until an utterance is closed; answers its generation and text.
    async fn utterance(&mut self) -> (Generation, String) {
        let mut text = String::new();
        loop {
            let command = tokio::time::timeout(Duration::from_secs(30), self.tts_commands.recv())
                .await
                .expect("a tts command in time")
                .expect("tts channel open");
            match command {
                TtsCommand::Speak {
                    generation,
                    text: piece,
                    last,
                } => {
                    text.push_str(&piece);
                    if last {
                        return (generation, text.trim().to_owned());
                    }
                }
                // A cancel of an interrupted reply is not part of the next utterance.
                TtsCommand::Cancel { .. } => {}
            }
        }
    }

    /// Plays the TTS: audio for `words` (one 160-byte chunk per word), their timings, done.
    async fn synthesize(&self, generation: Generation, text: &str) {
        let words: Vec<WordTiming> = text
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| WordTiming {
                word: w.into(),
                start: i as f32 * 0.02,
                end: (i + 1) as f32 * 0.02,
            })
            .collect();
        let words_len = words.len();
        for _ in &words {
            self.audio(generation, 160).await;
        }
        self.tts_events
            .send(TtsEvent::Words { generation, words })
            .await
            .unwrap();
        let audio_bytes = 160 * words_len as u64;
        self.tts_events
            .send(TtsEvent::Done {
                generation,
                audio_bytes,
            })
            .await
            .unwrap();
        self.settle().await;
    }

    /// Lets the agent take in what was sent to it. Audio reaches the writer's queue without
    /// the agent, so reading the writer no longer proves the agent has heard of it.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// Reads writer items until the end mark of `generation`; answers the marks seen.
    async fn until_end_mark(&mut self, generation: Generation) -> Vec<String> {
        let mut marks = Vec::new();
        loop {
            let item = tokio::time::timeout(Duration::from_secs(30), self.writer.recv())
                .await
                .expect("writer item in time")
                .expect("writer open");
            // Marks of an interrupted reply may still be queued; they belong to no one now.
            if let PlayoutItem::Mark {
                name,
                generation: g,
                ..
            } = item
                && g == generation
            {
                marks.push(name.clone());
                if name.ends_with(".end") {
                    return marks;
                }
            }
        }
    }

    async fn echo(&self, mark: &str) {
        self.media
            .send(MediaEvent::Mark(mark.to_owned()))
            .await
            .unwrap();
    }

    /// Speaks a reply to its end: synthesise, read the marks, echo them all.
    async fn play_reply(&mut self) -> (Generation, String) {
        let (generation, text) = self.utterance().await;
        self.synthesize(generation, &text).await;
        let marks = self.until_end_mark(generation).await;
        for mark in marks {
            self.echo(&mark).await;
        }
        (generation, text)
    }

    /// The STT's words (`is_final`: final, and the utterance ended by the provider's
    /// endpointing).
    async fn stt_heard(&self, text: &str, is_final: bool) {
        self.stt
            .send(SttEvent::Transcript {
                text: text.into(),
                is_final,
                speech_final: is_final,
                from_finalize: false,
            })
            .await
            .unwrap();
    }

    async fn user_says(&self, text: &str) {
        self.media.send(MediaEvent::SpeechStarted).await.unwrap();
        self.stt_heard(text, true).await;
        self.media.send(MediaEvent::SpeechStopped).await.unwrap();
    }

    async fn turn(&mut self) -> TurnRecord {
        loop {
            let record = tokio::time::timeout(Duration::from_secs(30), self.turns.recv())
                .await
                .expect("turn in time")
                .expect("turn");
            match record {
                Record::Turn(turn) => return turn,
                Record::Timing(timing) => self.timings.push(*timing),
                Record::ProviderEvent(event) => self.provider_events.push(event),
            }
        }
    }

    /// Every transcript line and timing recorded so far is read; answers whether a line was
    /// among them.
    fn more_turns(&mut self) -> bool {
        let mut turn = false;
        while let Ok(record) = self.turns.try_recv() {
            match record {
                Record::Turn(_) => turn = true,
                Record::Timing(timing) => self.timings.push(*timing),
                Record::ProviderEvent(event) => self.provider_events.push(event),
            }
        }
        turn
    }

    async fn end(self) -> CallOutcome {
        tokio::time::timeout(Duration::from_secs(60), self.agent)
            .await
            .expect("agent ends")
            .expect("agent ok")
    }
}

#[tokio::test(start_paused = true)]
async fn greets_then_answers_each_turn() {
    let mut h = start(
        setup(),
        vec![text_reply("Sure, a table for two. Anything else?")],
    );
    let (g1, greeting) = h.play_reply().await;
    assert_eq!(g1, Generation(1));
    assert_eq!(greeting, "Hello there, how can I help?");
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str(), turn.interrupted),
        ("assistant", greeting.as_str(), false)
    );

    h.user_says("A table for two please").await;
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str()),
        ("user", "A table for two please")
    );
    let (g2, reply) = h.play_reply().await;
    assert_eq!(g2, Generation(2));
    assert_eq!(reply, "Sure, a table for two. Anything else?");
    assert_eq!(h.turn().await.text, reply);

    let request = &h.llm.requests()[0];
    assert_eq!(
        request.messages,
        vec![
            ChatMessage::System {
                content: "You are a test agent.".into()
            },
            ChatMessage::Assistant {
                content: Some("Hello there, how can I help?".into()),
                tool_calls: vec![]
            },
            ChatMessage::User {
                content: "A table for two please".into()
            },
        ]
    );
    assert_eq!(request.tools, ["end_call", "transfer_call", "send_dtmf"]);

    h.media.send(MediaEvent::Hangup).await.unwrap();
    assert_eq!(h.end().await.reason, EndReason::CallerHungUp);
}

/// Each reply's timings reach the recorder once it has been heard (before its transcript
/// line): the greeting as a line, the answer with every stage from the STT's final to the first
/// mark echoed, the writer's first frame included.
#[tokio::test(start_paused = true)]
async fn each_reply_is_timed_stage_by_stage_once_heard() {
    let mut h = start(setup(), vec![text_reply("Sure, a table for two.")]);
    h.play_reply().await;
    h.turn().await;
    h.user_says("A table for two please").await;
    h.turn().await;
    let (generation, text) = h.utterance().await;
    h.synthesize(generation, &text).await;
    // The writer sends the reply's first frame.
    h.first_frames.sent(generation, Instant::now());
    let marks = h.until_end_mark(generation).await;
    tokio::time::advance(Duration::from_millis(300)).await;
    for mark in marks {
        h.echo(&mark).await;
    }
    assert_eq!(h.turn().await.text, text);
    let [greeting, answer] = &h.timings[..] else {
        panic!("two replies timed: {:?}", h.timings);
    };
    assert_eq!(
        (
            greeting.turn,
            greeting.source.as_str(),
            greeting.outcome.as_str()
        ),
        (1, "line", "heard")
    );
    assert_eq!(greeting.stamps.llm_request_ms, None);
    assert_eq!(
        (answer.turn, answer.source.as_str(), answer.outcome.as_str()),
        (2, "model", "heard")
    );
    let s = &answer.stamps;
    let stamps = [
        s.stt_final_ms,
        s.llm_request_ms,
        s.llm_first_token_ms,
        s.first_phrase_ms,
        s.tts_first_audio_ms,
        s.first_frame_ms,
        s.first_mark_ms,
    ];
    assert!(stamps.iter().all(Option::is_some), "{answer:?}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{answer:?}");
    assert_eq!(answer.stages.first_mark_ms, Some(300));
    assert!(answer.ended_ms >= s.first_mark_ms.unwrap());
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

/// A scripted text reaches the TTS phrase by phrase, as the model's text does, in one
/// utterance: a TTS that synthesises sentence by sentence can start on the first at once.
#[tokio::test(start_paused = true)]
async fn a_scripted_greeting_goes_to_the_tts_phrase_by_phrase() {
    let mut h = start(
        CallSetup {
            start_instruction: Some("Welcome to Acme. How can I help you today?".into()),
            ..setup()
        },
        vec![],
    );
    let mut pieces = Vec::new();
    loop {
        match h.tts_commands.recv().await.expect("tts channel open") {
            TtsCommand::Speak {
                generation,
                text,
                last,
            } => {
                assert_eq!(generation, Generation(1));
                if last {
                    break;
                }
                pieces.push(text);
            }
            TtsCommand::Cancel { .. } => panic!("nothing to cancel"),
        }
    }
    assert_eq!(pieces, ["Welcome to Acme. ", "How can I help you today? "]);
}

/// A TTS without word timings (Sarvam) sends more audio than the writer's queue holds, and
/// nothing else happens on the call: no mark echoes (their marks come only at the end), no
/// caller. The agent must still forward the rest as the writer drains (issue 14: each Sarvam
/// reply stopped once the queue was full, until the caller spoke).
#[tokio::test(start_paused = true)]
async fn audio_beyond_the_writer_queue_moves_on_as_the_writer_drains() {
    let mut h = start(setup(), vec![]);
    let (greeting, _) = h.utterance().await;
    // More than the writer's queue (64 here) and the TTS event queue (64) hold together.
    let chunks = 200;
    let tts = h.tts_events.clone();
    let tts_audio = h.tts_audio.clone();
    tokio::spawn(async move {
        tts.send(TtsEvent::Started {
            generation: greeting,
        })
        .await
        .unwrap();
        for _ in 0..chunks {
            let audio = Bytes::from(vec![0x55u8; 160]);
            let item = PlayoutItem::Audio {
                generation: greeting,
                audio,
            };
            tts_audio.send(item).await.unwrap();
        }
        tts.send(TtsEvent::Done {
            generation: greeting,
            audio_bytes: 160 * chunks,
        })
        .await
        .unwrap();
    });
    let mut audio = 0;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), h.writer.recv())
            .await
            .unwrap_or_else(|_| panic!("the reply stopped after {audio} chunks"))
            .expect("writer open");
        match item {
            PlayoutItem::Audio { .. } => audio += 1,
            PlayoutItem::Mark { name, .. } if name.ends_with(".end") => break,
            PlayoutItem::Mark { .. } => {}
        }
    }
    assert_eq!(audio, chunks);
}

#[tokio::test(start_paused = true)]
async fn barge_in_clears_and_keeps_only_what_was_heard() {
    let long = "Our opening hours are nine to five on weekdays and ten to two on Saturdays.";
    let mut h = start(setup(), vec![text_reply(long), text_reply("Of course.")]);
    h.play_reply().await;
    h.turn().await;
    h.user_says("When are you open").await;
    h.turn().await;
    let (g2, text) = h.utterance().await;
    h.synthesize(g2, &text).await;
    // Five words have been played when the caller cuts in.
    let mut echoed = 0;
    while echoed < 5 {
        if let Some(PlayoutItem::Mark { name, .. }) = h.writer.recv().await {
            h.echo(&name).await;
            echoed += 1;
        }
    }
    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    h.stt_heard("wait, what about Sunday", false).await;
    let control = h.writer_control.recv().await.unwrap();
    assert_eq!(
        control,
        WriterControl::Clear {
            generation: Generation(3)
        }
    );
    assert_eq!(h.tts_commands.recv().await.unwrap().generation(), g2);
    let turn = h.turn().await;
    assert_eq!(turn.text, "Our opening hours are nine");
    assert!(turn.interrupted);
    // Its timings say so: held at the caller's sound, confirmed by words, what was heard.
    let timing = h.timings.last().expect("the interrupted reply's timings");
    assert_eq!(timing.outcome, "interrupted");
    let interruption = &timing.interruptions[..];
    assert_eq!(interruption.len(), 1, "{timing:?}");
    assert_eq!(
        interruption[0].heard.as_deref(),
        Some("Our opening hours are nine")
    );
    assert_eq!(interruption[0].cleared_ms, Some(interruption[0].onset_ms));
    assert!(interruption[0].confirmed_ms.is_some() && interruption[0].resumed_ms.is_none());

    // Late output of the interrupted reply places nothing (its audio the writer drops). What
    // was queued before the cut the writer drops too; it is out of the way here.
    while h.writer.try_recv().is_ok() {}
    h.tts_events
        .send(TtsEvent::Started { generation: g2 })
        .await
        .unwrap();
    h.tts_events
        .send(TtsEvent::Words {
            generation: g2,
            words: vec![WordTiming {
                word: "weekdays".into(),
                start: 0.0,
                end: 0.5,
            }],
        })
        .await
        .unwrap();
    h.stt_heard("wait, what about Sunday", true).await;
    let (g4, _) = h.utterance().await;
    assert!(g4 > Generation(3), "the next reply is newer than the clear");
    while let Ok(item) = h.writer.try_recv() {
        assert!(
            !matches!(item, PlayoutItem::Mark { generation, .. } if generation == g2),
            "a mark placed for the interrupted reply"
        );
    }
    let history = &h.llm.requests()[1].messages;
    assert_eq!(
        history[3],
        ChatMessage::Assistant {
            content: Some("Our opening hours are nine".into()),
            tool_calls: vec![]
        }
    );
    assert_eq!(
        history[4],
        ChatMessage::User {
            content: "wait, what about Sunday".into()
        }
    );
    h.control.send(Control::HangUp).await.unwrap();
    let outcome = h.end().await;
    assert_eq!(outcome.reason, EndReason::HungUpByApi);
    assert_eq!(outcome.barge_ins, 1);
}

#[tokio::test(start_paused = true)]
async fn a_backchannel_stops_the_agent_at_once_and_it_resumes_from_the_first_unheard_word() {
    let mut h = start(setup(), vec![]);
    let (g1, text) = h.utterance().await;
    assert_eq!(text, "Hello there, how can I help?");
    h.synthesize(g1, &text).await;
    // The caller hears two words.
    h.echo("g1.1").await;
    h.echo("g1.2").await;
    h.settle().await;

    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    let control = h.writer_control.recv().await.unwrap();
    assert_eq!(
        control,
        WriterControl::Clear {
            generation: Generation(2)
        },
        "the agent stops at the caller's first sound"
    );
    // Far ends echo the marks of cleared audio: they were not heard.
    h.echo("g1.5").await;
    h.stt_heard("uh-huh", true).await;
    h.media.send(MediaEvent::SpeechStopped).await.unwrap();

    // An acknowledgement confirms nothing: the agent goes on from the first unheard word.
    let (g2, rest) = h.utterance().await;
    assert_eq!(g2, Generation(2));
    assert_eq!(rest, "how can I help?");
    h.synthesize(g2, &rest).await;
    for mark in h.until_end_mark(g2).await {
        h.echo(&mark).await;
    }
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str(), turn.interrupted),
        ("assistant", "Hello there, how can I help?", false),
        "heard once, whole"
    );
    assert!(
        h.llm.requests().is_empty(),
        "an uh-huh is not a turn to answer"
    );
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

/// The VAD's early onset stops the agent before speech is confirmed; a sound it then
/// withdraws (a knock, a cough) lets the reply go on at once, from the first unheard word,
/// without waiting for the confirmation window.
#[tokio::test(start_paused = true)]
async fn an_onset_holds_the_reply_and_a_withdrawn_one_resumes_it_at_once() {
    let mut h = start(setup(), vec![]);
    let (g1, text) = h.utterance().await;
    h.synthesize(g1, &text).await;
    h.echo("g1.1").await;
    h.settle().await;

    h.media.send(MediaEvent::Onset).await.unwrap();
    assert_eq!(
        h.writer_control.recv().await.unwrap(),
        WriterControl::Clear {
            generation: Generation(2)
        },
        "the agent stops at the onset"
    );
    let held_at = tokio::time::Instant::now();
    h.media.send(MediaEvent::OnsetWithdrawn).await.unwrap();
    let (g2, rest) = h.utterance().await;
    assert_eq!(g2, Generation(2));
    assert_eq!(rest, "there, how can I help?");
    assert!(
        held_at.elapsed() < Duration::from_millis(100),
        "resumed at the withdrawal, not after the confirmation window"
    );
    h.synthesize(g2, &rest).await;
    for mark in h.until_end_mark(g2).await {
        h.echo(&mark).await;
    }
    let turn = h.turn().await;
    assert_eq!(
        (turn.text.as_str(), turn.interrupted),
        ("Hello there, how can I help?", false)
    );
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn long_speech_interrupts_even_without_words() {
    let mut h = start(setup(), vec![]);
    let (g1, text) = h.utterance().await;
    h.synthesize(g1, &text).await;
    h.writer.recv().await.unwrap();
    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    let control = h.writer_control.recv().await.unwrap();
    assert_eq!(
        control,
        WriterControl::Clear {
            generation: Generation(2)
        }
    );
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn end_call_waits_for_the_goodbye_to_be_heard() {
    let mut h = start(
        setup(),
        vec![tool_reply("Goodbye, have a nice day!", "end_call", "{}")],
    );
    h.play_reply().await;
    h.turn().await;
    h.user_says("That's all, bye").await;
    h.turn().await;
    let (g2, text) = h.utterance().await;
    assert_eq!(text, "Goodbye, have a nice day!");
    h.synthesize(g2, &text).await;
    let marks = h.until_end_mark(g2).await;
    // Until the end mark comes back the call stays up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !h.agent.is_finished(),
        "hung up before the goodbye was heard"
    );
    for mark in marks {
        h.echo(&mark).await;
    }
    let outcome = h.end().await;
    assert_eq!(outcome.reason, EndReason::AssistantEnded);
}

#[tokio::test(start_paused = true)]
async fn silence_prompts_once_then_ends() {
    let mut h = start(setup(), vec![]);
    h.play_reply().await;
    h.turn().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (_, prompt) = h.play_reply().await;
    assert_eq!(prompt, SILENCE_PROMPT);
    h.turn().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (_, goodbye) = h.play_reply().await;
    assert_eq!(goodbye, SILENCE_GOODBYE);
    assert_eq!(h.end().await.reason, EndReason::SilenceTimeout);
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_caller_when_asked() {
    let mut config = setup();
    config.first_message_mode = FirstMessageMode::WaitForCaller;
    let mut h = start(config, vec![text_reply("Hi! How can I help?")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.tts_commands.try_recv().is_err(), "the agent waits");
    h.user_says("Hello?").await;
    let (g, text) = h.utterance().await;
    assert_eq!((g, text.as_str()), (Generation(1), "Hi! How can I help?"));
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn max_duration_ends_politely() {
    let mut config = setup();
    config.max_duration = Duration::from_secs(30);
    config.silence_timeout = Duration::from_secs(600);
    let mut h = start(config, vec![]);
    h.play_reply().await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    let (_, text) = h.play_reply().await;
    assert_eq!(text, MAX_DURATION_GOODBYE);
    assert_eq!(h.end().await.reason, EndReason::MaxDuration);
}

#[tokio::test(start_paused = true)]
async fn http_tool_result_goes_back_to_the_model() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/weather",
        post(
            |axum::Json(body): axum::Json<serde_json::Value>| async move {
                axum::Json(serde_json::json!({"city": body["city"], "forecast": "sunny"}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/weather", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let tool = crate::assistant::HttpTool {
        id: "t".into(),
        owner_id: "o".into(),
        name: "get_weather".into(),
        description: "Weather".into(),
        parameters: serde_json::json!({"type": "object"}),
        url,
        method: crate::assistant::ToolMethod::Post,
        headers: Default::default(),
        timeout_ms: 5000,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let mut config = setup();
    config.toolbox = Toolbox::new(vec![tool], false);
    let mut h = start(
        config,
        vec![
            tool_reply("Let me check.", "get_weather", r#"{"city":"Paris"}"#),
            text_reply("It is sunny in Paris."),
        ],
    );
    h.play_reply().await;
    h.turn().await;
    h.user_says("Weather in Paris?").await;
    h.turn().await;
    let (g2, preface) = h.utterance().await;
    assert_eq!(preface, "Let me check.");
    h.synthesize(g2, &preface).await;
    // The tool runs on a real socket: let real time pass for it.
    let (g, answer) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::time::advance(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
            if h.llm.requests().len() == 2 {
                break h.utterance().await;
            }
        }
    })
    .await
    .expect("follow-up in time");
    assert_eq!(answer, "It is sunny in Paris.");
    assert_eq!(g, g2.next(), "the answer after the tool is a new utterance");
    let follow_up = &h.llm.requests()[1].messages;
    let ChatMessage::Tool {
        tool_call_id,
        content,
    } = &follow_up[4]
    else {
        panic!("tool message expected: {follow_up:?}")
    };
    assert_eq!(tool_call_id, "call_1");
    assert!(content.contains("sunny"), "{content}");
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

impl TtsCommand {
    fn generation(&self) -> Generation {
        match self {
            TtsCommand::Speak { generation, .. } | TtsCommand::Cancel { generation } => *generation,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_word_timings_marks_are_estimated_from_the_text() {
    let mut h = start(setup(), vec![]);
    let (g1, text) = h.utterance().await;
    assert_eq!(text, "Hello there, how can I help?");
    for _ in 0..6 {
        h.audio(g1, 160).await;
    }
    h.tts_events
        .send(TtsEvent::Done {
            generation: g1,
            audio_bytes: 6 * 160,
        })
        .await
        .unwrap();
    let mut marks = Vec::new();
    loop {
        if let Some(PlayoutItem::Mark { name, at, .. }) = h.writer.recv().await {
            marks.push((name.clone(), at));
            if name.ends_with(".end") {
                break;
            }
        }
    }
    // One mark per word, at growing positions within the 960 bytes, then the end.
    assert_eq!(marks.len(), 7, "{marks:?}");
    assert!(marks.windows(2).all(|w| w[0].1 <= w[1].1), "{marks:?}");
    assert_eq!(marks[5].1, 960);
    h.echo(&marks[1].0).await;
    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    h.stt_heard("wait a moment", false).await;
    assert!(matches!(
        h.writer_control.recv().await,
        Some(WriterControl::Clear { .. })
    ));
    let turn = h.turn().await;
    assert_eq!(turn.text, "Hello there,");
    assert!(turn.interrupted);
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn a_tool_result_that_arrives_after_a_barge_in_is_kept() {
    use axum::routing::post;
    // A slow tool: it answers after two seconds.
    let app = axum::Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            axum::Json(serde_json::json!({"booked": true}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tool = crate::assistant::HttpTool {
        id: "t".into(),
        owner_id: "o".into(),
        name: "book".into(),
        description: "Book".into(),
        parameters: serde_json::json!({"type": "object"}),
        url,
        method: crate::assistant::ToolMethod::Post,
        headers: Default::default(),
        timeout_ms: 10_000,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let mut config = setup();
    config.toolbox = Toolbox::new(vec![tool], false);
    let mut h = start(
        config,
        vec![
            tool_reply("One moment while I book that for you.", "book", "{}"),
            text_reply("Sure, what else?"),
        ],
    );
    h.play_reply().await;
    h.turn().await;
    h.user_says("Book a table").await;
    h.turn().await;
    let (g2, preface) = h.utterance().await;
    h.synthesize(g2, &preface).await;
    // The caller cuts in while the tool is still running.
    let first_mark = loop {
        if let Some(PlayoutItem::Mark { name, .. }) = h.writer.recv().await {
            break name;
        }
    };
    h.echo(&first_mark).await;
    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    h.stt_heard("actually never mind", true).await;
    assert!(matches!(
        h.writer_control.recv().await,
        Some(WriterControl::Clear { .. })
    ));
    // The slow tool finishes on a real socket while the paused clock lets it.
    let follow_up = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let requests = h.llm.requests();
            if requests.len() >= 2 {
                break requests[1].clone();
            }
        }
    })
    .await
    .expect("a follow-up request");
    // The next request answers the caller; the tool call has its answer (pending, or the result
    // once it came) and the history stays valid.
    let tool_message = follow_up.messages.iter().find_map(|m| match m {
        ChatMessage::Tool { content, .. } => Some(content.clone()),
        _ => None,
    });
    assert!(tool_message.is_some(), "{:?}", follow_up.messages);
    assert_eq!(
        follow_up.messages.last(),
        Some(&ChatMessage::User {
            content: "actually never mind".into()
        })
    );
    // Later requests see the tool's real result.
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.play_reply().await;
    h.user_says("and one more thing").await;
    let later = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let requests = h.llm.requests();
            if requests.len() >= 3 {
                break requests[2].clone();
            }
        }
    })
    .await
    .expect("a third request");
    let kept = later
        .messages
        .iter()
        .any(|m| matches!(m, ChatMessage::Tool { content, .. } if content.contains("booked")));
    assert!(
        kept,
        "the late tool result is in the history: {:?}",
        later.messages
    );
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn a_far_end_that_shows_events_gets_transcripts_words_and_the_end() {
    let mut h = start(
        CallSetup {
            events: true,
            ..setup()
        },
        vec![text_reply("Sure thing.")],
    );
    let (g1, greeting) = h.utterance().await;
    h.synthesize(g1, &greeting).await;
    // Each word mark carries its word, for the far end to show as it is sent.
    let mut words = Vec::new();
    let mut marks = Vec::new();
    while !marks.last().is_some_and(|m: &String| m.ends_with(".end")) {
        let item = tokio::time::timeout(Duration::from_secs(30), h.writer.recv())
            .await
            .expect("writer item in time")
            .expect("writer open");
        if let PlayoutItem::Mark { name, spoken, .. } = item {
            words.extend(spoken);
            marks.push(name);
        }
    }
    assert_eq!(words, ["Hello", "there,", "how", "can", "I", "help?"]);
    for mark in &marks {
        h.echo(mark).await;
    }
    h.user_says("A table please").await;
    let event = tokio::time::timeout(Duration::from_secs(30), h.events.recv())
        .await
        .expect("an event in time");
    assert_eq!(
        event,
        Some(CallEvent::Transcript {
            text: "A table please".into(),
            is_final: true
        })
    );
    h.media.send(MediaEvent::Hangup).await.unwrap();
    let mut events = std::mem::replace(&mut h.events, mpsc::channel(1).1);
    assert_eq!(h.end().await.reason, EndReason::CallerHungUp);
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        last = Some(event);
    }
    assert_eq!(
        last,
        Some(CallEvent::End {
            reason: "caller_hung_up"
        })
    );
}

#[tokio::test(start_paused = true)]
async fn telephony_gets_no_events_and_no_words() {
    let mut h = start(setup(), vec![]);
    let (g1, greeting) = h.utterance().await;
    h.synthesize(g1, &greeting).await;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), h.writer.recv())
            .await
            .expect("writer item in time")
            .expect("writer open");
        if let PlayoutItem::Mark { name, spoken, .. } = item {
            assert_eq!(spoken, None);
            if name.ends_with(".end") {
                break;
            }
        }
    }
    h.user_says("Hello").await;
    h.media.send(MediaEvent::Hangup).await.unwrap();
    let mut events = std::mem::replace(&mut h.events, mpsc::channel(1).1);
    h.end().await;
    assert!(events.try_recv().is_err(), "no events for telephony");
}

#[tokio::test(start_paused = true)]
async fn a_pause_ends_the_turn_at_the_finalize_and_speech_right_after_continues_it() {
    let mut h = start(
        setup(),
        vec![
            text_reply("For two, noted."),
            text_reply("A table for two at eight, noted."),
        ],
    );
    h.play_reply().await;
    h.turn().await;

    let final_words = |text: &str, from_finalize: bool| SttEvent::Transcript {
        text: text.into(),
        is_final: true,
        speech_final: false,
        from_finalize,
    };
    h.media.send(MediaEvent::SpeechStarted).await.unwrap();
    h.stt
        .send(final_words("A table for two", false))
        .await
        .unwrap();
    h.media.send(MediaEvent::Paused).await.unwrap();
    h.settle().await;
    // The STT's answer to the finalize sent at the pause ends the turn: no endpointing waited.
    h.stt.send(final_words("", true)).await.unwrap();
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str()),
        ("user", "A table for two")
    );
    let (first, _) = h.utterance().await;

    // The caller goes on before any of the reply is heard: it is taken back unheard.
    h.media.send(MediaEvent::Resumed).await.unwrap();
    h.settle().await;
    let cancelled = tokio::time::timeout(Duration::from_secs(5), h.tts_commands.recv())
        .await
        .expect("a cancel in time");
    assert!(
        matches!(cancelled, Some(TtsCommand::Cancel { generation }) if generation == first),
        "{cancelled:?}"
    );
    h.stt.send(final_words("at eight", false)).await.unwrap();
    h.media.send(MediaEvent::Paused).await.unwrap();
    h.settle().await;
    h.stt.send(final_words("", true)).await.unwrap();
    let merged = h.turn().await;
    assert_eq!(merged.text, "A table for two at eight");
    assert_eq!(
        merged.seq, turn.seq,
        "stored again in the partial turn's place"
    );
    let (second, reply) = h.play_reply().await;
    assert!(second > first);
    assert_eq!(reply, "A table for two at eight, noted.");

    let requests = h.llm.requests();
    assert_eq!(requests.len(), 2);
    let users: Vec<_> = requests[1]
        .messages
        .iter()
        .filter_map(|m| match m {
            ChatMessage::User { content } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(users, ["A table for two at eight"], "one merged turn");
}

#[tokio::test(start_paused = true)]
async fn keypad_digits_are_collected_into_one_entry_that_is_the_callers_turn() {
    let mut h = start(
        setup(),
        vec![
            text_reply("Thanks, account 1234."),
            text_reply("And 9 it is."),
        ],
    );
    h.play_reply().await;
    h.turn().await;
    for key in ['1', '2', '3', '4', '#'] {
        h.media.send(MediaEvent::Dtmf(key)).await.unwrap();
    }
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str()),
        ("user", "(the caller entered 1234 on the keypad)")
    );
    h.play_reply().await;
    h.turn().await;
    // Without the terminator the entry ends after its timeout.
    h.media.send(MediaEvent::Dtmf('9')).await.unwrap();
    let turn = h.turn().await;
    assert_eq!(turn.text, "(the caller pressed 9 on the keypad)");
    assert_eq!(h.llm.requests().len(), 2);
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn keys_are_ignored_when_the_assistant_says_so() {
    let mut h = start(
        CallSetup {
            keypad: crate::agent::keypad::KeypadSettings {
                mode: crate::agent::keypad::KeypadMode::Ignore,
                ..Default::default()
            },
            ..setup()
        },
        vec![],
    );
    h.play_reply().await;
    h.turn().await;
    for key in ['5', '#'] {
        h.media.send(MediaEvent::Dtmf(key)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.llm.requests().is_empty());
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

#[tokio::test(start_paused = true)]
async fn send_dtmf_plays_the_keys_after_the_words_before_it() {
    let mut h = start(
        setup(),
        vec![tool_reply(
            "Pressing one.",
            "send_dtmf",
            r#"{"digits":"1#"}"#,
        )],
    );
    h.play_reply().await;
    h.turn().await;
    h.user_says("Press one for me").await;
    h.turn().await;
    let (said, text) = h.play_reply().await;
    assert_eq!(text, "Pressing one.");
    // Then the keys' tones, in a generation of their own, closed by an end mark.
    let mut bytes = 0;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), h.writer.recv())
            .await
            .expect("tones in time")
            .expect("writer open");
        match item {
            PlayoutItem::Audio { generation, audio } if generation > said => bytes += audio.len(),
            PlayoutItem::Mark {
                name, generation, ..
            } if generation > said && name.ends_with(".end") => {
                h.echo(&name).await;
                break;
            }
            _ => {}
        }
    }
    assert_eq!(bytes, 2 * 180 * 8, "two keys of 180 ms of 8 kHz mu-law");
    h.media.send(MediaEvent::Hangup).await.unwrap();
    h.end().await;
}

const VOICEMAIL: &str = "Hi Ann, this is Acme about your order. Please call us back.";

fn with_voicemail() -> CallSetup {
    CallSetup {
        voicemail_message: Some(VOICEMAIL.into()),
        ..setup()
    }
}

/// The machine's greeting ends while the agent talks to it: the agent stops at once, says the
/// voicemail message whole — the machine's own sounds neither interrupt it nor become a turn —
/// and hangs up once its end mark is back.
#[tokio::test(start_paused = true)]
async fn at_the_beep_the_agent_leaves_the_voicemail_and_hangs_up() {
    let mut h = start(with_voicemail(), vec![]);
    let (greeting, text) = h.utterance().await;
    h.synthesize(greeting, &text).await;
    // The machine heard the first word of the greeting.
    loop {
        if let Some(PlayoutItem::Mark { name, .. }) = h.writer.recv().await {
            h.echo(&name).await;
            break;
        }
    }
    h.settle().await;
    h.control
        .send(Control::AnsweredBy(AnsweredBy::MachineEndBeep))
        .await
        .unwrap();
    assert!(matches!(
        h.writer_control.recv().await,
        Some(WriterControl::Clear { .. })
    ));
    let cut = h.turn().await;
    assert_eq!(
        (cut.role.as_str(), cut.text.as_str(), cut.interrupted),
        ("assistant", "Hello", true)
    );
    let (message, text) = h.utterance().await;
    assert_eq!(text, VOICEMAIL);
    h.synthesize(message, &text).await;
    let marks = h.until_end_mark(message).await;
    // The machine records; whatever it plays is nobody's turn and cuts nothing.
    h.user_says("beep").await;
    h.media.send(MediaEvent::Dtmf('1')).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.writer_control.try_recv().is_err(), "the message was cut");
    assert!(
        !h.agent.is_finished(),
        "hung up before the message was heard"
    );
    for mark in marks {
        h.echo(&mark).await;
    }
    let turn = h.turn().await;
    assert_eq!(
        (turn.role.as_str(), turn.text.as_str(), turn.interrupted),
        ("assistant", VOICEMAIL, false)
    );
    assert!(!h.more_turns(), "the machine's sounds became a turn");
    assert!(h.llm.requests().is_empty(), "the model was asked to answer");
    assert_eq!(h.end().await.reason, EndReason::Voicemail);
}

/// A person (or a verdict that is not the end of a greeting) changes nothing: the call goes on
/// as it would without detection, and no message is said.
#[tokio::test(start_paused = true)]
async fn a_human_verdict_changes_nothing() {
    let mut h = start(with_voicemail(), vec![text_reply("Sure, one moment.")]);
    h.play_reply().await;
    h.turn().await;
    for answered_by in [
        AnsweredBy::Human,
        AnsweredBy::Unknown,
        AnsweredBy::MachineStart,
    ] {
        h.control
            .send(Control::AnsweredBy(answered_by))
            .await
            .unwrap();
    }
    h.settle().await;
    h.user_says("Can you check my order").await;
    assert_eq!(h.turn().await.text, "Can you check my order");
    let (_, reply) = h.play_reply().await;
    assert_eq!(reply, "Sure, one moment.");
    assert!(h.writer_control.try_recv().is_err(), "nothing was cut");
    h.media.send(MediaEvent::Hangup).await.unwrap();
    assert_eq!(h.end().await.reason, EndReason::CallerHungUp);
}

/// A fax cannot hear a message: the call ends at once, as a voicemail call.
#[tokio::test(start_paused = true)]
async fn a_fax_is_hung_up_on_at_once() {
    let mut h = start(with_voicemail(), vec![]);
    let _ = h.utterance().await;
    h.control
        .send(Control::AnsweredBy(AnsweredBy::Fax))
        .await
        .unwrap();
    assert_eq!(h.end().await.reason, EndReason::Voicemail);
}

fn llm_down() -> crate::llm::LlmError {
    crate::llm::LlmError::Unavailable {
        status: Some(503),
        message: "overloaded".into(),
    }
}

/// A reply the model fails for good is replaced by the assistant's apology and the call goes
/// on; a reply that works in between starts the count again; the second failure in a row ends
/// the call politely as a provider error. Each step is a provider event.
#[tokio::test(start_paused = true)]
async fn a_failed_reply_is_apologised_for_and_a_second_in_a_row_ends_the_call() {
    let mut config = setup();
    config.llm_apology = "Sorry, say that again?".into();
    let llm = ScriptedLlm::answering(vec![
        Err(llm_down()),
        Ok(text_reply("Sure, for two.")),
        Err(llm_down()),
        Err(llm_down()),
    ]);
    let mut h = start_with(config, llm);
    h.play_reply().await;
    h.turn().await;

    for (asked, answer) in [
        ("A table please", "Sorry, say that again?"),
        ("A table for two please", "Sure, for two."),
        ("At seven", "Sorry, say that again?"),
    ] {
        h.user_says(asked).await;
        assert_eq!(h.turn().await.text, asked);
        let (_, said) = h.play_reply().await;
        assert_eq!(said, answer);
        assert_eq!(h.turn().await.text, answer);
    }
    h.user_says("Hello?").await;
    h.turn().await;
    let (_, goodbye) = h.play_reply().await;
    assert_eq!(goodbye, FAILURE_GOODBYE);
    assert_eq!(h.turn().await.text, FAILURE_GOODBYE);
    let events = std::mem::take(&mut h.provider_events);
    assert_eq!(h.end().await.reason, EndReason::ProviderError);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["failed", "apology", "failed", "apology", "failed"],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.provider == "llm"));
    assert_eq!(events[1].detail.as_deref(), Some("Sorry, say that again?"));
}
