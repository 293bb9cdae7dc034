//! `CartesiaTts` (WebSocket) against the Cartesia fake.

use std::time::Duration;

use serde_json::Value;
use voxbridge::assistant::{CartesiaVoice, SarvamVoice, TtsConfig};
use voxbridge::audio::{AudioFormat, Encoding};
use voxbridge::generation::Generation;
use voxbridge::sim::Latency;
use voxbridge::sim::cartesia::{self, CartesiaFakeConfig, CartesiaFakeHandle, ContextFault};
use voxbridge::tts::{
    CartesiaTts, TextToSpeech, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession,
};

use super::*;

const VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";
const KEY: &str = cartesia::DEFAULT_API_KEY;

fn voice() -> TtsConfig {
    TtsConfig::Cartesia(CartesiaVoice {
        voice_id: VOICE.into(),
        ..Default::default()
    })
}

fn params(output: AudioFormat) -> TtsParams {
    TtsParams {
        voice: voice(),
        output,
        playout: None,
    }
}

async fn fake(config: CartesiaFakeConfig) -> (String, CartesiaFakeHandle) {
    let (router, handle) = cartesia::router(config);
    (serve(router).await, handle)
}

fn client(base_url: &str, key: &str) -> CartesiaTts {
    CartesiaTts::new(
        TtsEndpoint {
            base_url: base_url.into(),
            api_key: key.into(),
            model: "sonic-3".into(),
        },
        "",
    )
    .with_timeouts(fast_timeouts())
}

async fn session(base_url: &str, output: AudioFormat) -> TtsSession {
    client(base_url, KEY).connect(params(output)).await.unwrap()
}

/// A text long enough to still be streaming when a test intervenes.
fn long_text() -> String {
    "This sentence keeps going for a while so that there is time to interrupt it. ".repeat(4)
}

#[tokio::test]
async fn speaks_a_turn_as_one_context_with_continuations() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, "Hello, ", false).await;
    speak(&tts, 1, "how are you? ", false).await;
    speak(&tts, 1, "", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();

    assert_eq!(turn.audio.len(), samples_for("Hello, how are you? ", 8000));
    assert!(mulaw_rms(&turn.audio) > 1000.0, "speech, not silence");
    let words: Vec<_> = turn.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(words, ["Hello,", "how", "are", "you?"]);
    assert!(turn.words.windows(2).all(|w| w[0].end <= w[1].start));

    let received = handle.received();
    let upgrade = &received.upgrades[0];
    assert_eq!(
        upgrade.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(upgrade.header("cartesia-version"), Some("2026-03-01"));
    assert_eq!(received.context_ids.len(), 1);
    let id = &received.context_ids[0];
    assert_eq!(received.transcript_of(id), "Hello, how are you? ");
    let inputs = received.inputs_of(id);
    let continues: Vec<_> = inputs.iter().map(|m| m["continue"].clone()).collect();
    assert_eq!(
        continues,
        [Value::Bool(true), Value::Bool(true), Value::Bool(false)]
    );
    let fixed = |m: &Value| {
        let mut m = m.clone();
        let o = m.as_object_mut().unwrap();
        o.remove("transcript");
        o.remove("continue");
        m
    };
    assert!(inputs.iter().all(|m| fixed(m) == fixed(inputs[0])));
    assert_eq!(inputs[0]["output_format"]["encoding"], "pcm_mulaw");
    assert_eq!(inputs[0]["output_format"]["sample_rate"], 8000);
    assert_eq!(inputs[0]["add_timestamps"], true);
}

#[tokio::test]
async fn pcm16_chunks_cut_at_odd_bytes_arrive_as_whole_samples() {
    let (base, _handle) = fake(CartesiaFakeConfig {
        odd_byte_chunks: true,
        ..Default::default()
    })
    .await;
    let mut tts = session(&base, AudioFormat::new(Encoding::Pcm16, 24_000)).await;
    let text = "Whole samples only, please.";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert!(turn.chunk_lens.len() > 2);
    assert!(
        turn.chunk_lens.iter().all(|n| n % 2 == 0),
        "{:?}",
        turn.chunk_lens
    );
    assert_eq!(turn.audio.len(), samples_for(text, 24_000) * 2);
}

#[tokio::test]
async fn each_generation_gets_a_fresh_context() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, "One.", true).await;
    Turn::collect(&mut tts.events, 1).await.end.unwrap();
    speak(&tts, 2, "Two.", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
    let ids = handle.received().context_ids;
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(handle.received().upgrades.len(), 1, "one socket per call");
}

#[tokio::test]
async fn cancel_drops_late_chunks_of_the_cancelled_turn() {
    let (base, handle) = fake(CartesiaFakeConfig {
        latency: Latency::from_millis(0, 5),
        ..Default::default()
    })
    .await;
    // The fake keeps streaming after `cancel`, like audio already in flight.
    handle.inject(ContextFault::IgnoreCancel);
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    loop {
        if matches!(next_event(&mut tts.events).await, TtsEvent::Audio { .. }) {
            break;
        }
    }
    cancel(&tts, 1).await;
    speak(&tts, 2, "Yes?", true).await;
    let events = events_until_end(&mut tts.events, 2).await;
    assert_nothing_of_after(&events, 1, 2);
    Turn::of(&events, 2).end.unwrap();
    let received = handle.received();
    assert_eq!(received.cancels, [received.context_ids[0].clone()]);
    assert!(!events.iter().any(|e| matches!(
        e,
        TtsEvent::Done {
            generation: Generation(1),
            ..
        }
    )));
}

#[tokio::test]
async fn the_voice_key_and_model_override_the_servers() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    let voice = TtsConfig::Cartesia(CartesiaVoice {
        voice_id: VOICE.into(),
        api_key: Some(KEY.into()),
        model_id: Some("sonic-3.5".into()),
        language: Some("fr".into()),
    });
    let mut tts = client(&base, "server-key-that-is-wrong")
        .connect(TtsParams {
            voice,
            output: AudioFormat::MULAW_8K,
            playout: None,
        })
        .await
        .unwrap();
    speak(&tts, 1, "Bonjour.", true).await;
    Turn::collect(&mut tts.events, 1).await.end.unwrap();
    let received = handle.received();
    assert_eq!(received.messages[0]["model_id"], "sonic-3.5");
    assert_eq!(received.messages[0]["language"], "fr");
}

#[tokio::test]
async fn a_bad_key_is_unauthorized() {
    let (base, _handle) = fake(CartesiaFakeConfig::default()).await;
    let error = client(&base, "sk_wrong")
        .connect(params(AudioFormat::MULAW_8K))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, TtsError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_upgrades_are_typed() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    handle.fail_next_upgrade(429);
    let error = client(&base, KEY)
        .connect(params(AudioFormat::MULAW_8K))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, TtsError::RateLimited { .. }), "{error:?}");
    handle.fail_next_upgrade(503);
    let error = client(&base, KEY)
        .connect(params(AudioFormat::MULAW_8K))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, TtsError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn wrong_configuration_is_refused_before_connecting() {
    let base = "http://127.0.0.1:9"; // nothing listens: nothing may be attempted
    let error = client(base, KEY)
        .connect(params(AudioFormat::new(Encoding::Pcm16, 11_025)))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        TtsError::UnsupportedFormat(AudioFormat::new(Encoding::Pcm16, 11_025))
    );
    let sarvam = TtsParams {
        voice: TtsConfig::Sarvam(SarvamVoice {
            speaker: "anushka".into(),
            target_language_code: "hi-IN".into(),
            api_key: None,
            model: None,
        }),
        output: AudioFormat::MULAW_8K,
        playout: None,
    };
    assert!(matches!(
        client(base, KEY).connect(sarvam).await,
        Err(TtsError::Misconfigured(_))
    ));
    assert!(matches!(
        client(base, "")
            .connect(params(AudioFormat::MULAW_8K))
            .await,
        Err(TtsError::Misconfigured(_))
    ));
}

#[tokio::test]
async fn the_concurrency_limit_fails_only_the_new_turn() {
    let (base, _handle) = fake(CartesiaFakeConfig {
        latency: Latency::from_millis(0, 5),
        max_concurrent_contexts: Some(1),
        ..Default::default()
    })
    .await;
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    speak(&tts, 2, "Me too.", true).await;
    let mut ends = Vec::new();
    while ends.len() < 2 {
        match next_event(&mut tts.events).await {
            TtsEvent::Done { generation, .. } => ends.push((generation, Ok(()))),
            TtsEvent::Failed {
                generation: Some(g),
                error,
            } => ends.push((g, Err(error))),
            _ => {}
        }
    }
    assert!(
        ends.iter().any(|(g, e)| *g == Generation(1) && e.is_ok()),
        "{ends:?}"
    );
    assert!(
        ends.iter()
            .any(|(g, e)| *g == Generation(2) && matches!(e, Err(TtsError::RateLimited { .. }))),
        "{ends:?}"
    );
}

#[tokio::test]
async fn a_close_mid_turn_fails_the_turn_and_the_next_turn_works() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    handle.inject(ContextFault::CloseAfterChunks(2));
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Closed(_))),
        "{:?}",
        turn.end
    );
    speak(&tts, 2, "Still here.", true).await;
    let turn = Turn::collect(&mut tts.events, 2).await;
    turn.end.unwrap();
    assert_eq!(turn.audio.len(), samples_for("Still here.", 8000));
    assert_eq!(handle.received().upgrades.len(), 2);
}

#[tokio::test]
async fn a_stalled_socket_is_detected_and_replaced() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    handle.inject(ContextFault::StallAfterChunks(1));
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    speak(&tts, 1, &long_text(), true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(turn.end, Err(TtsError::Stalled(_))),
        "{:?}",
        turn.end
    );
    speak(&tts, 2, "Back again.", true).await;
    Turn::collect(&mut tts.events, 2).await.end.unwrap();
}

#[tokio::test]
async fn malformed_frames_are_skipped() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    handle.inject(ContextFault::Malformed);
    let mut tts = session(&base, AudioFormat::MULAW_8K).await;
    let text = "Despite the noise.";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert_eq!(turn.audio.len(), samples_for(text, 8000));
}

#[tokio::test]
async fn error_frames_fail_their_turn_in_both_shapes() {
    for legacy_errors in [false, true] {
        let (base, handle) = fake(CartesiaFakeConfig {
            legacy_errors,
            ..Default::default()
        })
        .await;
        handle.inject(ContextFault::Error { status: 400 });
        let mut tts = session(&base, AudioFormat::MULAW_8K).await;
        speak(&tts, 1, "Refused.", true).await;
        let turn = Turn::collect(&mut tts.events, 1).await;
        assert!(
            matches!(&turn.end, Err(TtsError::Rejected { status: 400, message }) if message.contains("injected")),
            "legacy={legacy_errors}: {:?}",
            turn.end
        );
        speak(&tts, 2, "Accepted.", true).await;
        Turn::collect(&mut tts.events, 2).await.end.unwrap();
        assert_eq!(
            handle.received().upgrades.len(),
            1,
            "an error frame keeps the socket"
        );
    }
}

#[tokio::test]
async fn dropping_the_session_closes_the_socket() {
    let (base, handle) = fake(CartesiaFakeConfig::default()).await;
    let tts = session(&base, AudioFormat::MULAW_8K).await;
    for _ in 0..100 {
        if handle.open_sockets() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handle.open_sockets(), 1);
    drop(tts);
    for _ in 0..300 {
        if handle.open_sockets() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the socket stayed open");
}
