//! `SarvamRest` (`POST /text-to-speech`) against the Sarvam TTS fake.

use voxbridge::assistant::{SarvamVoice, TtsConfig};
use voxbridge::audio::{AudioFormat, Encoding};
use voxbridge::sim::sarvam_tts::{self, SarvamTtsFakeConfig, SarvamTtsFakeHandle};
use voxbridge::sim::voice::{DEFAULT_MS_PER_CHAR, SampleEncoding, speak_all};
use voxbridge::tts::{SarvamRest, TextToSpeech, TtsEndpoint, TtsError, TtsParams, TtsSession};

use super::*;

fn voice(model: Option<&str>) -> TtsConfig {
    TtsConfig::Sarvam(SarvamVoice {
        speaker: if model == Some("bulbul:v3") {
            "Shubh"
        } else {
            "Anushka"
        }
        .into(),
        target_language_code: "hi-IN".into(),
        api_key: None,
        model: model.map(str::to_owned),
    })
}

fn client(base_url: &str) -> SarvamRest {
    SarvamRest::new(TtsEndpoint {
        base_url: base_url.into(),
        api_key: sarvam_tts::DEFAULT_API_KEY.into(),
        model: "bulbul:v2".into(),
    })
    .with_timeouts(fast_timeouts())
}

async fn start(
    config: SarvamTtsFakeConfig,
    output: AudioFormat,
) -> (TtsSession, SarvamTtsFakeHandle) {
    let (router, handle) = sarvam_tts::router(config);
    let base = serve(router).await;
    let session = client(&base)
        .connect(TtsParams {
            voice: voice(None),
            output,
            playout: None,
        })
        .await
        .unwrap();
    (session, handle)
}

#[tokio::test]
async fn mulaw_output_is_encoded_from_the_wav_at_the_transport_rate() {
    let (mut tts, handle) = start(SarvamTtsFakeConfig::default(), AudioFormat::MULAW_8K).await;
    speak(&tts, 1, "नमस्ते! ", false).await;
    speak(&tts, 1, "आपका अपॉइंटमेंट मंगलवार को है।", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    let text = "नमस्ते! आपका अपॉइंटमेंट मंगलवार को है।";
    // The same samples the fake rendered, G.711-encoded: nothing lost, nothing resampled.
    assert_eq!(
        turn.audio,
        speak_all(text, SampleEncoding::Mulaw, 8000, DEFAULT_MS_PER_CHAR)
    );
    let received = handle.received();
    let (request, body) = &received.rest_requests[0];
    assert_eq!(
        request.header("api-subscription-key"),
        Some(sarvam_tts::DEFAULT_API_KEY)
    );
    assert_eq!(body["speech_sample_rate"], 8000);
    assert_eq!(body["speaker"], "anushka");
    assert_eq!(body["model"], "bulbul:v2");
    assert_eq!(body["text"], text);
}

#[tokio::test]
async fn wavs_with_extra_chunks_before_data_are_parsed() {
    let config = SarvamTtsFakeConfig {
        wav_list_chunk: true,
        ..Default::default()
    };
    let (mut tts, _handle) = start(config, AudioFormat::PCM16_16K).await;
    let text = "ठीक है।";
    speak(&tts, 1, text, true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert_eq!(
        turn.audio,
        speak_all(text, SampleEncoding::Pcm16, 16_000, DEFAULT_MS_PER_CHAR)
    );
}

#[tokio::test]
async fn http_errors_fail_the_turn_and_the_next_turn_works() {
    let (mut tts, handle) = start(SarvamTtsFakeConfig::default(), AudioFormat::MULAW_8K).await;
    for (generation, status) in [(1, 403), (2, 429), (3, 500)] {
        handle.fail_next_rest(status);
        speak(&tts, generation, "नमस्ते", true).await;
        let turn = Turn::collect(&mut tts.events, generation).await;
        let expected = matches!(
            (&turn.end, status),
            (Err(TtsError::Unauthorized { status: 403, .. }), 403)
                | (Err(TtsError::RateLimited { .. }), 429)
                | (Err(TtsError::Unavailable(_)), 500)
        );
        assert!(expected, "{status}: {:?}", turn.end);
    }
    speak(&tts, 4, "नमस्ते", true).await;
    Turn::collect(&mut tts.events, 4).await.end.unwrap();
}

#[tokio::test]
async fn a_wrong_key_is_403() {
    let (router, _handle) = sarvam_tts::router(SarvamTtsFakeConfig::default());
    let base = serve(router).await;
    let mut tts = SarvamRest::new(TtsEndpoint {
        base_url: base,
        api_key: "sk_wrong".into(),
        model: "bulbul:v2".into(),
    })
    .connect(TtsParams {
        voice: voice(None),
        output: AudioFormat::MULAW_8K,
        playout: None,
    })
    .await
    .unwrap();
    speak(&tts, 1, "नमस्ते", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    assert!(
        matches!(&turn.end, Err(TtsError::Unauthorized { status: 403, message }) if message.contains("invalid_api_key_error")),
        "{:?}",
        turn.end
    );
}

#[tokio::test]
async fn rates_follow_the_model() {
    let unsupported = AudioFormat::new(Encoding::Pcm16, 11_025);
    let result = client("http://127.0.0.1:9")
        .connect(TtsParams {
            voice: voice(None),
            output: unsupported,
            playout: None,
        })
        .await;
    assert_eq!(result.err(), Some(TtsError::UnsupportedFormat(unsupported)));
    // bulbul:v3 adds 48 kHz over REST.
    let (router, handle) = sarvam_tts::router(SarvamTtsFakeConfig::default());
    let base = serve(router).await;
    let mut tts = client(&base)
        .connect(TtsParams {
            voice: voice(Some("bulbul:v3")),
            output: AudioFormat::new(Encoding::Pcm16, 48_000),
            playout: None,
        })
        .await
        .unwrap();
    speak(&tts, 1, "नमस्ते", true).await;
    let turn = Turn::collect(&mut tts.events, 1).await;
    turn.end.unwrap();
    assert_eq!(turn.audio.len(), samples_for("नमस्ते", 48_000) * 2);
    assert_eq!(handle.received().rest_requests[0].1["speaker"], "shubh");
}
