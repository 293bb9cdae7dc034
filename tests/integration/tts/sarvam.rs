//! `SarvamTts` (WebSocket) against the Sarvam TTS fake.

use voxbridge::assistant::{SarvamVoice, TtsConfig};
use voxbridge::audio::{AudioFormat, Encoding};
use voxbridge::generation::Generation;
use voxbridge::sim::Latency;
use voxbridge::sim::sarvam_tts::{self, SarvamTtsFakeConfig, SarvamTtsFakeHandle, StreamFault};
use voxbridge::tts::{
    SarvamTts, TextToSpeech, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession,
};

use super::*;

const KEY: &str = sarvam_tts::DEFAULT_API_KEY;

fn voice(speaker: &str, model: Option<&str>) -> TtsConfig {
    TtsConfig::Sarvam(SarvamVoice {
        speaker: speaker.into(),
        target_language_code: "hi-IN".into(),
        api_key: None,
        model: model.map(str::to_owned),
    })
}

async fn fake(config: SarvamTtsFakeConfig) -> (String, SarvamTtsFakeHandle) {
    let (router, handle) = sarvam_tts::router(config);
    (serve(router).await, handle)
}

fn client(base_url: &str, key: &str) -> SarvamTts {
    SarvamTts::new(TtsEndpoint {
        base_url: base_url.into(),
        api_key: key.into(),
        model: "bulbul:v2".into(),
    })
    .with_timeouts(fast_timeouts())
}

async fn session(base_url: &str, output: AudioFormat) -> TtsSession {
    client(base_url, KEY)
        .connect(TtsParams {
            voice: voice("anushka", None),
            output,
            playout: None,
        })
        .await
        .unwrap()
}

fn long_text() -> String {
    "यह वाक्य काफी लंबा है ताकि इसे बीच में रोका जा सके। ".repeat(4)
}

#[tokio::test]
async fn config_first_text_pieces_then_flush_and_final() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    let mut tts = client(&base, KEY)
        .connect(TtsParams {
            voice: voice("Anushka", None),
            output: AudioFormat::MULAW_8K,
            playout: None,
        })
        .await
        .unwrap();
    speak(&tts, 1, "नमस्ते, ", false).await;
    speak(&tts, 1, "आप कैसे हैं?", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    let text = "नमस्ते, आप कैसे हैं?";
    assert_eq!(turn.audio.len(), samples_for(text, 8000));
    assert!(mulaw_rms(&turn.audio) > 1000.0);

    let received = handle.received();
    let upgrade = &received.upgrades[0];
    assert_eq!(upgrade.header("api-subscription-key"), Some(KEY));
    assert_eq!(upgrade.query_param("model").as_deref(), Some("bulbul:v2"));
    assert_eq!(
        upgrade.query_param("send_completion_event").as_deref(),
        Some("true")
    );
    let config = &received.messages[0];
    assert_eq!(config["type"], "config");
    assert_eq!(config["data"]["output_audio_codec"], "mulaw");
    assert_eq!(config["data"]["speech_sample_rate"], "8000");
    assert_eq!(config["data"]["speaker"], "anushka");
    assert_eq!(received.text(), text);
    assert_eq!(received.messages.last().unwrap()["type"], "flush");
    assert_eq!(received.of_type("flush").len(), 1);
}

#[tokio::test]
async fn linear16_arrives_in_whole_samples_at_the_transport_rate() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    let mut tts = session(&base, AudioFormat::PCM16_16K).await;
    let text = "ठीक है, मैं देखती हूँ।";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert!(turn.chunk_lens.iter().all(|n| n % 2 == 0));
    assert_eq!(turn.audio.len(), samples_for(text, 16_000) * 2);
    let config = &handle.received().messages[0];
    assert_eq!(config["data"]["output_audio_codec"], "linear16");
    assert_eq!(config["data"]["speech_sample_rate"], "16000");
}

#[tokio::test]
async fn a_bad_key_is_403() {
    let (base, _handle) = fake(SarvamTtsFakeConfig::default()).await;
    let error = client(&base, "sk_wrong")
        .connect(TtsParams {
            voice: voice("anushka", None),
            output: AudioFormat::MULAW_8K,
            playout: None,
        })
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&error, TtsError::Unauthorized { status: 403, message } if message.contains("invalid_api_key_error")),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_upgrades_are_typed() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    handle.fail_next_upgrade(503);
    let error = client(&base, KEY)
        .connect(TtsParams {
            voice: voice("anushka", None),
            output: AudioFormat::MULAW_8K,
            playout: None,
        })
        .await
        .err()
        .unwrap();
    assert!(matches!(error, TtsError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn a_speaker_of_another_model_fails_the_turn() {
    let (base, _handle) = fake(SarvamTtsFakeConfig::default()).await;
    // anushka is a bulbul:v2 voice; the voice's model overrides the server's.
    let mut tts = client(&base, KEY)
        .connect(TtsParams {
            voice: voice("anushka", Some("bulbul:v3")),
            output: AudioFormat::MULAW_8K,
            playout: None,
        })
        .await
        .unwrap();
    speak(&tts, 1, "नमस्ते", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Rejected { status: 400, .. })),
        "{:?}",
        turn.end
    );
}

#[tokio::test]
async fn cancel_reconnects_and_no_audio_of_the_cancelled_turn_follows() {
    let (base, handle) = fake(SarvamTtsFakeConfig {
        latency: Latency::from_millis(0, 5),
        ..Default::default()
    })
    .await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), false).await;
    loop {
        if matches!(next_event(&mut tts.events).await, TtsEvent::Audio { .. }) {
            break;
        }
    }
    cancel(&tts, 1).await;
    speak(&tts, 2, "हाँ, बोलिए।", true).await;
    let events = events_until_end(&mut tts.events, 2).await;
    assert_nothing_of_after(&events, 1, 2);
    let turn = Turn::of(&events, 2);
    turn.end.unwrap();
    assert_eq!(turn.audio.len(), samples_for("हाँ, बोलिए।", 8000));
    let received = handle.received();
    assert_eq!(
        received.upgrades.len(),
        2,
        "a fresh socket after the cancel"
    );
    assert_eq!(
        received.of_type("config").len(),
        2,
        "config first on every socket"
    );
}

#[tokio::test]
async fn a_new_turn_waits_for_the_previous_final() {
    let (base, _handle) = fake(SarvamTtsFakeConfig {
        latency: Latency::from_millis(0, 2),
        ..Default::default()
    })
    .await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    let (first, second) = ("पहला उत्तर यहाँ है।", "और यह दूसरा।");
    speak(&tts, 1, first, true).await;
    speak(&tts, 2, second, true).await;
    let events = events_until_end(&mut tts.events, 2).await;
    let done_1 = events
        .iter()
        .position(|e| {
            matches!(
                e,
                TtsEvent::Done {
                    generation: Generation(1),
                    ..
                }
            )
        })
        .expect("g1 done");
    let first_2 = events
        .iter()
        .position(|e| generation_of(e) == Some(Generation(2)))
        .unwrap();
    assert!(done_1 < first_2);
    assert_eq!(Turn::of(&events, 1).audio.len(), samples_for(first, 8000));
    assert_eq!(Turn::of(&events, 2).audio.len(), samples_for(second, 8000));
}

#[tokio::test]
async fn a_close_mid_turn_fails_the_turn_and_the_next_turn_works() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    handle.inject(StreamFault::CloseAfterChunks(2));
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Closed(_))),
        "{:?}",
        turn.end
    );
    speak(&tts, 2, "फिर से।", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
}

#[tokio::test]
async fn a_stalled_socket_is_detected_and_replaced() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    handle.inject(StreamFault::StallAfterChunks(1));
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Stalled(_))),
        "{:?}",
        turn.end
    );
    speak(&tts, 2, "फिर से।", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
}

#[tokio::test]
async fn malformed_frames_are_skipped() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    handle.inject(StreamFault::Malformed);
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    let text = "शोर के बावजूद।";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert_eq!(turn.audio.len(), samples_for(text, 8000));
}

#[tokio::test]
async fn an_error_message_fails_the_turn_and_the_next_turn_works() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    handle.inject(StreamFault::Error);
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, "पहला", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Rejected { status: 400, .. })),
        "{:?}",
        turn.end
    );
    speak(&tts, 2, "दूसरा", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
}

#[tokio::test]
async fn unsupported_rates_are_refused() {
    let error = client("http://127.0.0.1:9", KEY)
        .connect(TtsParams {
            voice: voice("anushka", None),
            output: AudioFormat::new(Encoding::Pcm16, 44_100),
            playout: None,
        })
        .await
        .err()
        .unwrap();
    assert!(matches!(error, TtsError::UnsupportedFormat(_)));
}

/// Every flush follows new text (none is empty, so each has something to answer with a final).
fn assert_each_flush_follows_text(messages: &[serde_json::Value]) {
    let kinds: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["type"].as_str())
        .filter(|k| *k != "ping")
        .collect();
    for (i, kind) in kinds.iter().enumerate() {
        if *kind == "flush" {
            assert!(i > 0 && kinds[i - 1] == "text", "an empty flush: {kinds:?}");
        }
    }
}

/// Issue 14: a short first phrase (below Sarvam's `min_buffer_size` of 50) is synthesised at
/// once, not held in Sarvam's buffer until more text comes; the turn is done only after the
/// final of every flush.
#[tokio::test]
async fn a_lone_short_phrase_is_heard_without_waiting_for_more_text() {
    let (base, handle) = fake(SarvamTtsFakeConfig {
        latency: Latency::from_millis(20, 0),
        times_real_time: 4,
        ..Default::default()
    })
    .await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    let (first, rest) = ("Sure. ", "Your table for two is booked for seven tonight.");
    speak(&tts, 1, first, false).await;
    // Nothing more is coming yet; the phrase must still be spoken, in full.
    let mut heard = 0;
    while heard < samples_for(first, 8000) {
        match next_event(&mut tts.events).await {
            TtsEvent::Audio { audio, .. } => heard += audio.len(),
            other => panic!("{other:?} before the first phrase was heard"),
        }
    }
    speak(&tts, 1, rest, true).await;
    let events = events_until_end(&mut tts.events, 1).await;
    let turn = Turn::of(&events, 1);
    turn.end.unwrap();
    assert_eq!(
        heard + turn.audio.len(),
        samples_for(&format!("{first}{rest}"), 8000)
    );
    let received = handle.received();
    assert_eq!(received.of_type("flush").len(), 2);
    assert_each_flush_follows_text(&received.messages);
    assert_eq!(received.segments, [first, rest]);
}

/// Phrases of one sentence handed over together reach Sarvam together and are flushed once, so
/// Sarvam synthesises the sentence as one (its prosody); each sentence gets its own flush, and
/// each final brings the word timings of its sentence, spread over that sentence's audio.
#[tokio::test]
async fn phrases_of_a_sentence_get_one_flush_and_each_sentence_its_word_timings() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    // Queued before the session task runs again (this test's runtime has one thread).
    speak(&tts, 1, "You said: hello, ", false).await;
    speak(&tts, 1, "how can I help? ", false).await;
    speak(&tts, 1, "Tell me.", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    let received = handle.received();
    assert_eq!(received.of_type("text").len(), 3);
    assert_eq!(received.of_type("flush").len(), 2);
    assert_eq!(
        received.segments,
        ["You said: hello, how can I help? ", "Tell me."]
    );
    let text = "You said: hello, how can I help? Tell me.";
    assert_eq!(turn.audio.len(), samples_for(text, 8000));
    let words: Vec<&str> = turn.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    assert!(
        turn.words
            .windows(2)
            .all(|w| w[0].start <= w[0].end && w[0].end <= w[1].start),
        "{:?}",
        turn.words
    );
    // The last word ends with the audio (65 ms a character).
    let seconds = turn.audio.len() as f32 / 8000.0;
    assert!((turn.words.last().unwrap().end - seconds).abs() < 0.01);
    // "help?" ends the first sentence's audio: its 33 characters.
    let help = turn.words.iter().find(|w| w.word == "help?").unwrap();
    assert!((help.end - 32.0 * 0.065).abs() < 0.01, "{help:?}");
}

/// The call closes a turn after its last phrase's final already came (a model that paused
/// before saying it was done): the turn ends without another flush.
#[tokio::test]
async fn closing_after_every_final_ends_the_turn_without_an_empty_flush() {
    let (base, handle) = fake(SarvamTtsFakeConfig::default()).await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    let text = "One moment please.";
    speak(&tts, 1, text, false).await;
    let mut heard = 0;
    while heard < samples_for(text, 8000) {
        if let TtsEvent::Audio { audio, .. } = next_event(&mut tts.events).await {
            heard += audio.len();
        }
    }
    // Give the final time to arrive before the turn is closed.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    speak(&tts, 1, "", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert!(turn.audio.is_empty(), "all audio came before the close");
    let received = handle.received();
    assert_eq!(received.of_type("flush").len(), 1);
    assert_each_flush_follows_text(&received.messages);
    // The socket is free for the next turn.
    speak(&tts, 2, "Next.", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
}
