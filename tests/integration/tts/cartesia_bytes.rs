//! `CartesiaBytes` (`POST /tts/bytes`) against the Cartesia fake.

use voxbridge::assistant::{CartesiaVoice, TtsConfig};
use voxbridge::audio::{AudioFormat, Encoding};
use voxbridge::sim::Latency;
use voxbridge::sim::cartesia::{self, CartesiaFakeConfig, CartesiaFakeHandle};
use voxbridge::tts::{
    CartesiaBytes, TextToSpeech, TtsEndpoint, TtsError, TtsEvent, TtsParams, TtsSession,
};

use super::*;

async fn start(
    config: CartesiaFakeConfig,
    output: AudioFormat,
) -> (TtsSession, CartesiaFakeHandle) {
    let (router, handle) = cartesia::router(config);
    let base = serve(router).await;
    let client = CartesiaBytes::new(
        TtsEndpoint {
            base_url: base,
            api_key: cartesia::DEFAULT_API_KEY.into(),
            model: "sonic-3".into(),
        },
        "2026-03-01",
    )
    .with_timeouts(fast_timeouts());
    let params = TtsParams {
        voice: TtsConfig::Cartesia(CartesiaVoice {
            voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
            ..Default::default()
        }),
        output,
        playout: None,
    };
    (client.connect(params).await.unwrap(), handle)
}

#[tokio::test]
async fn one_request_per_turn_in_the_transport_format() {
    let (mut tts, handle) = start(CartesiaFakeConfig::default(), AudioFormat::MULAW_8K).await;
    speak(&tts, 1, "Your appointment ", false).await;
    speak(&tts, 1, "is confirmed.", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    let text = "Your appointment is confirmed.";
    assert_eq!(turn.audio.len(), samples_for(text, 8000));
    assert!(mulaw_rms(&turn.audio) > 1000.0);
    let received = handle.received();
    assert_eq!(received.bytes_requests.len(), 1);
    let (request, body) = &received.bytes_requests[0];
    assert_eq!(request.header("cartesia-version"), Some("2026-03-01"));
    assert_eq!(body["transcript"], text);
    assert_eq!(body["output_format"]["container"], "raw");
    assert_eq!(body["output_format"]["encoding"], "pcm_mulaw");
    assert_eq!(body["output_format"]["sample_rate"], 8000);
}

#[tokio::test]
async fn odd_sized_body_pieces_become_whole_samples() {
    let config = CartesiaFakeConfig {
        odd_byte_chunks: true,
        ..Default::default()
    };
    let (mut tts, _handle) = start(config, AudioFormat::new(Encoding::Pcm16, 16_000)).await;
    let text = "Streaming bodies split anywhere.";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert!(
        turn.chunk_lens.iter().all(|n| n % 2 == 0),
        "{:?}",
        turn.chunk_lens
    );
    assert_eq!(turn.audio.len(), samples_for(text, 16_000) * 2);
}

#[tokio::test]
async fn http_errors_fail_the_turn_and_the_next_turn_works() {
    let (mut tts, handle) = start(CartesiaFakeConfig::default(), AudioFormat::MULAW_8K).await;
    for (generation, status) in [(1, 401), (2, 429), (3, 500)] {
        handle.fail_next_bytes(status);
        speak(&tts, generation, "Hello.", true).await;
        let turn = Turn::collect(&mut tts.events, generation).await;
        let expected = matches!(
            (&turn.end, status),
            (Err(TtsError::Unauthorized { status: 401, .. }), 401)
                | (Err(TtsError::RateLimited { .. }), 429)
                | (Err(TtsError::Unavailable(_)), 500)
        );
        assert!(expected, "{status}: {:?}", turn.end);
    }
    speak(&tts, 4, "Hello.", true).await;
    Turn::collect(&mut tts.events, 4).await.end.unwrap();
}

#[tokio::test]
async fn cancel_stops_the_request() {
    let config = CartesiaFakeConfig {
        latency: Latency::from_millis(0, 5),
        ..Default::default()
    };
    let (mut tts, _handle) = start(config, AudioFormat::MULAW_8K).await;
    speak(
        &tts,
        1,
        &"A long answer that will be interrupted. ".repeat(5),
        true,
    )
    .await;
    loop {
        if matches!(next_event(&mut tts.events).await, TtsEvent::Audio { .. }) {
            break;
        }
    }
    cancel(&tts, 1).await;
    speak(&tts, 2, "Go ahead.", true).await;
    let events = events_until_end(&mut tts.events, 2).await;
    assert_nothing_of_after(&events, 1, 2);
    Turn::of(&events, 2).end.unwrap();
}
