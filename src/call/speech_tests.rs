//! The agent's voice against a TTS and a writer that only record what they are told.

use super::*;

struct Peers {
    tts: mpsc::Receiver<TtsCommand>,
    writer: mpsc::Receiver<PlayoutItem>,
    control: mpsc::Receiver<WriterControl>,
}

fn speech(writer_capacity: usize) -> (Speech, Peers) {
    let (tts_tx, tts) = mpsc::channel(64);
    let (writer_tx, writer) = mpsc::channel(writer_capacity);
    let (control_tx, control) = mpsc::channel(8);
    let speech = Speech::new(tts_tx, writer_tx, control_tx, AudioFormat::MULAW_8K, false);
    (
        speech,
        Peers {
            tts,
            writer,
            control,
        },
    )
}

fn commands(peers: &mut Peers) -> Vec<(Generation, String, bool)> {
    let mut out = Vec::new();
    while let Ok(command) = peers.tts.try_recv() {
        if let TtsCommand::Speak {
            generation,
            text,
            last,
        } = command
        {
            out.push((generation, text, last));
        }
    }
    out
}

fn marks(peers: &mut Peers) -> Vec<(String, u64, bool)> {
    let mut out = Vec::new();
    while let Ok(item) = peers.writer.try_recv() {
        if let PlayoutItem::Mark { name, at, last, .. } = item {
            out.push((name, at, last));
        }
    }
    out
}

#[tokio::test]
async fn a_tool_pause_closes_the_utterance_and_the_next_words_take_a_new_generation() {
    let (mut s, mut peers) = speech(64);
    s.begin();
    s.say("Let me check. ");
    s.pause();
    s.say("It is sunny.");
    s.complete();
    let sent = commands(&mut peers);
    let generations: Vec<u64> = sent.iter().map(|(g, _, _)| g.0).collect();
    assert_eq!(generations.first(), Some(&1));
    // The second utterance waits for the first to be done before it is sent.
    assert!(generations.iter().all(|g| *g == 1), "{sent:?}");
    s.on_tts(TtsEvent::Done {
        generation: Generation(1),
        audio_bytes: 800,
    });
    let sent = commands(&mut peers);
    assert!(sent.iter().all(|(g, _, _)| *g == Generation(2)), "{sent:?}");
    assert!(sent.last().is_some_and(|(_, _, last)| *last));
    s.on_tts(TtsEvent::Done {
        generation: Generation(2),
        audio_bytes: 1_600,
    });
    let placed = marks(&mut peers);
    let end = placed.last().expect("an end mark");
    assert_eq!(end, &("g2.end".to_owned(), 1_600, true));
}

#[tokio::test(start_paused = true)]
async fn word_timings_become_marks_at_their_bytes_and_echoes_tell_what_was_heard() {
    let (mut s, mut peers) = speech(64);
    s.begin();
    s.say("Your table is booked.");
    s.complete();
    assert!(matches!(
        s.on_tts(TtsEvent::Started {
            generation: Generation(1)
        }),
        Spoken::FirstAudio { .. }
    ));
    let words = ["Your", "table", "is", "booked."]
        .iter()
        .enumerate()
        .map(|(i, w)| WordTiming {
            word: (*w).to_owned(),
            start: i as f32 * 0.25,
            end: (i + 1) as f32 * 0.25,
        })
        .collect();
    s.on_tts(TtsEvent::Words {
        generation: Generation(1),
        words,
    });
    let placed = marks(&mut peers);
    // μ-law 8 kHz: 8000 bytes a second.
    assert_eq!(placed[0], ("g1.1".to_owned(), 2_000, false));
    assert_eq!(placed[3], ("g1.4".to_owned(), 8_000, false));
    assert!(s.speaking());
    s.on_mark("g1.2");
    commands(&mut peers);
    let cut = s.cut().expect("a reply to cut");
    assert_eq!(cut.heard, "Your table");
    assert!(cut.audible);
    assert_eq!(
        peers.control.try_recv().unwrap(),
        WriterControl::Clear {
            generation: Generation(2)
        }
    );
    assert!(matches!(
        peers.tts.try_recv().unwrap(),
        TtsCommand::Cancel { generation } if generation == Generation(1)
    ));
    assert!(!s.active());
}

#[tokio::test]
async fn a_failed_retry_still_gets_an_end_mark_after_what_came() {
    let (mut s, mut peers) = speech(64);
    s.begin();
    s.say("Hello there.");
    s.complete();
    // The first failure says it again in a new utterance; the retry fails too.
    for generation in [1, 2] {
        s.on_tts(TtsEvent::Failed {
            generation: Some(Generation(generation)),
            error: TtsError::Closed("gone".into()),
        });
    }
    let placed = marks(&mut peers);
    assert_eq!(placed, [("g2.end".to_owned(), u64::MAX, true)]);
    assert_eq!(s.on_mark("g2.end"), Spoken::Heard);
}

#[tokio::test]
async fn a_failed_utterance_says_its_unsaid_words_again_once_in_a_new_one() {
    let (mut s, mut peers) = speech(64);
    s.begin();
    s.say("Hello there, how are you today?");
    s.complete();
    while peers.tts.try_recv().is_ok() {}
    // The TTS made "Hello there," and then failed.
    s.on_tts(TtsEvent::Started {
        generation: Generation(1),
    });
    s.on_tts(TtsEvent::Words {
        generation: Generation(1),
        words: vec![
            WordTiming {
                word: "Hello".into(),
                start: 0.0,
                end: 0.3,
            },
            WordTiming {
                word: "there,".into(),
                start: 0.3,
                end: 0.6,
            },
        ],
    });
    s.on_tts(TtsEvent::Failed {
        generation: Some(Generation(1)),
        error: TtsError::Closed("gone".into()),
    });
    let mut spoken = Vec::new();
    while let Ok(command) = peers.tts.try_recv() {
        if let TtsCommand::Speak {
            generation, text, ..
        } = command
        {
            spoken.push((generation, text));
        }
    }
    assert_eq!(
        spoken,
        [
            (Generation(2), "how are you today? ".to_owned()),
            (Generation(2), String::new())
        ],
        "the unsaid words in a new utterance, closed since the reply is complete"
    );
    // A second failure is not retried: what was made plays, the end mark follows it, and the
    // words the retry did not make leave the reply's text.
    s.on_tts(TtsEvent::Failed {
        generation: Some(Generation(2)),
        error: TtsError::Closed("gone again".into()),
    });
    assert!(
        !std::iter::from_fn(|| peers.tts.try_recv().ok())
            .any(|c| matches!(c, TtsCommand::Speak { .. })),
        "retried once only"
    );
    while peers.writer.try_recv().is_ok() {}
    for mark in ["g1.1", "g1.2", "g2.end"] {
        s.on_mark(mark);
    }
    assert_eq!(
        s.finish().map(|(said, _)| said).as_deref(),
        Some("Hello there,"),
        "what the retry did not make was never heard: not in what was said"
    );
}

#[tokio::test]
async fn marks_wait_in_order_while_the_writer_queue_is_full() {
    let (mut s, mut peers) = speech(1);
    s.begin();
    s.say("One two three.");
    s.complete();
    s.on_tts(TtsEvent::Done {
        generation: Generation(1),
        audio_bytes: 3_000,
    });
    // One estimated mark went in; the other two and the end mark wait.
    assert!(s.backlog_waiting());
    let mut names = Vec::new();
    while s.backlog_waiting() || !peers.writer.is_empty() {
        if let Some(PlayoutItem::Mark { name, .. }) = peers.writer.recv().await {
            names.push(name);
        }
        if s.backlog_waiting() {
            let permit = s.writer().clone().reserve_owned().await.ok();
            s.on_room(permit);
        }
    }
    assert_eq!(names, ["g1.1", "g1.2", "g1.3", "g1.end"]);
}
