//! Chooses and configures a call's providers from the assistant's settings and the server's
//! config: the STT of `assistant_stt_config`, the TTS of `assistant_tts_model` (an `api_key` in
//! the voice overrides the server's), and the OpenAI-compatible LLM of `assistant_llm_config`.

use std::sync::Arc;

use crate::assistant::{Assistant, SttProvider, TtsConfig};
use tokio::sync::mpsc;

use crate::audio::AudioFormat;
use crate::audio::playout::PlayoutItem;
use crate::config::Config;
use crate::egress::EgressClient;
use crate::llm::fallback::{Attempted, FallbackChat, LlmNotice};
use crate::llm::openai::OpenAiChat;
use crate::llm::{ChatModel, LlmEndpoint, LlmError, LlmTimeouts, RetryPolicy};
use crate::stt::deepgram::DeepgramStt;
use crate::stt::sarvam::SarvamStt;
use crate::stt::{SpeechToText, SttEndpoint, SttParams};
use crate::tts::cartesia::CartesiaTts;
use crate::tts::sarvam::SarvamTts;
use crate::tts::{TextToSpeech, TtsEndpoint, TtsParams};

/// Silence (ms) after which the STT ends the caller's utterance.
pub const ENDPOINTING_MS: u32 = 300;
/// Silence (ms) after the last word after which the STT declares the utterance over even when
/// endpointing never fired (noisy lines).
pub const UTTERANCE_END_MS: u32 = 1000;

/// The call's speech-to-text client and what to ask it for.
pub fn speech_to_text(
    config: &Config,
    assistant: &Assistant,
    format: AudioFormat,
) -> (Box<dyn SpeechToText>, SttParams) {
    let stt = &assistant.settings.stt;
    let params = SttParams {
        format,
        model: stt.effective_model().to_owned(),
        language: stt.effective_language().to_owned(),
        endpointing_ms: ENDPOINTING_MS,
        utterance_end_ms: UTTERANCE_END_MS,
    };
    let client: Box<dyn SpeechToText> = match stt.provider {
        SttProvider::Deepgram => Box::new(DeepgramStt::new(SttEndpoint {
            base_url: config.deepgram.base_url.clone(),
            api_key: config.deepgram.api_key.clone(),
        })),
        SttProvider::Sarvam => Box::new(SarvamStt::new(SttEndpoint {
            base_url: config.sarvam.base_url.clone(),
            api_key: config.sarvam.api_key.clone(),
        })),
    };
    (client, params)
}

/// The call's text-to-speech client and what to ask it for: audio in the transport's format,
/// put straight into the call's writer (`playout`).
pub fn text_to_speech(
    config: &Config,
    voice: &TtsConfig,
    output: AudioFormat,
    playout: mpsc::Sender<PlayoutItem>,
) -> (Box<dyn TextToSpeech>, TtsParams) {
    let params = TtsParams {
        voice: voice.clone(),
        output,
        playout: Some(playout),
    };
    let client: Box<dyn TextToSpeech> = match voice {
        TtsConfig::Cartesia(_) => Box::new(CartesiaTts::new(
            TtsEndpoint {
                base_url: config.cartesia.base_url.clone(),
                api_key: config.cartesia.api_key.clone(),
                model: config.cartesia.model.clone(),
            },
            config.cartesia.version.clone(),
        )),
        TtsConfig::Sarvam(_) => Box::new(SarvamTts::new(TtsEndpoint {
            base_url: config.sarvam.base_url.clone(),
            api_key: config.sarvam.api_key.clone(),
            model: config.sarvam.model.clone(),
        })),
    };
    (client, params)
}

/// The model that writes an assistant's replies (calls, chats, the sales assistant): the
/// assistant's endpoint and model, or the server's, asked again once when it fails before its
/// first token, then the assistant's fallback model if it names one (see
/// [`crate::llm::fallback`]). `notices` hears of every retry and fallback (a call's session).
pub fn language_model(
    config: &Config,
    assistant: &Assistant,
    http: &reqwest::Client,
    egress: &EgressClient,
    notices: Option<mpsc::Sender<LlmNotice>>,
) -> Result<Arc<dyn ChatModel>, LlmError> {
    let settings = &assistant.settings.llm;
    let timeouts = LlmTimeouts {
        first_token: std::time::Duration::from_millis(u64::from(settings.first_token_timeout_ms)),
        ..LlmTimeouts::default()
    };
    // The chain makes the one retry itself, so that it is seen and counted.
    let no_resends = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let endpoint = primary_endpoint(config, assistant)?;
    let primary = Attempted {
        name: endpoint.model.clone(),
        model: Arc::new(client(endpoint, http, egress, timeouts)?.with_retry_policy(no_resends)),
    };
    let fallback = settings.fallback.as_ref().and_then(|fallback| {
        let endpoint = LlmEndpoint::resolve(&fallback.as_settings(), &config.llm);
        let name = endpoint.model.clone();
        match client(endpoint, http, egress, timeouts) {
            Ok(model) => Some(Attempted {
                name,
                model: Arc::new(model.with_retry_policy(no_resends)),
            }),
            // Checked when saved; if the policy changed since, the assistant's own model
            // still answers, without a fallback.
            Err(e) => {
                tracing::warn!(error = %e, "the fallback model cannot be used");
                None
            }
        }
    });
    Ok(Arc::new(
        FallbackChat::new(primary, fallback).with_notices(notices),
    ))
}

/// The assistant's own model alone, with the client's own resends and other time limits (an
/// analysis answers more than a spoken reply, and no caller waits on it).
pub fn language_model_with(
    config: &Config,
    assistant: &Assistant,
    http: &reqwest::Client,
    egress: &EgressClient,
    timeouts: LlmTimeouts,
) -> Result<Arc<dyn ChatModel>, LlmError> {
    let endpoint = primary_endpoint(config, assistant)?;
    Ok(Arc::new(client(endpoint, http, egress, timeouts)?))
}

/// Where the assistant's own model is.
fn primary_endpoint(config: &Config, assistant: &Assistant) -> Result<LlmEndpoint, LlmError> {
    match &assistant.settings.llm_provider {
        // A named provider is the operator's endpoint (a v1 assistant's `provider`).
        Some(name) => config
            .llm
            .provider_endpoint(name, assistant.settings.llm.model.as_deref())
            .ok_or_else(|| LlmError::Config(format!("unknown LLM provider {name:?}"))),
        None => Ok(LlmEndpoint::resolve(&assistant.settings.llm, &config.llm)),
    }
}

/// A client of `endpoint`. An endpoint the assistant chose is reached through `egress` (the
/// address policy), one the operator configured through the server's own client.
fn client(
    endpoint: LlmEndpoint,
    http: &reqwest::Client,
    egress: &EgressClient,
    timeouts: LlmTimeouts,
) -> Result<OpenAiChat, LlmError> {
    let client = if endpoint.owner_chosen {
        let url = url::Url::parse(&endpoint.base_url)
            .map_err(|e| LlmError::Config(format!("base url is not a URL: {e}")))?;
        egress
            .client_for(&url)
            .map_err(|refusal| LlmError::Config(refusal.to_string()))?
            .clone()
    } else {
        http.clone()
    };
    OpenAiChat::new(client, endpoint, timeouts)
}
