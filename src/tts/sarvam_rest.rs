//! Sarvam over HTTP (`POST /text-to-speech`): the fallback when the streaming socket is not
//! wanted. One request per generation once its text is complete (split at word boundaries when
//! it exceeds the model's length limit). The answer's `audios[]` are base64 WAV files; their
//! RIFF chunks are parsed (not a fixed 44-byte header) and the PCM is sliced out without a copy.
//! The rate asked for is the transport's, so no resampling is needed; a μ-law or A-law
//! transport gets the PCM encoded with G.711 here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};

use super::cartesia_bytes::http_client;
use super::http_session::{self, Synthesize};
use super::{
    TextToSpeech, TtsEndpoint, TtsError, TtsParams, TtsSession, TtsTimeouts, resolve_api_key,
    resolve_model, wav, ws,
};
use crate::assistant::TtsConfig;
use crate::audio::{AudioFormat, Encoding, g711};
use crate::config::ProviderConfig;

use super::sarvam::DEFAULT_MODEL;

/// Rates every model produces over REST.
const SAMPLE_RATES: [u32; 4] = [8000, 16_000, 22_050, 24_000];
/// Rates only bulbul:v3 adds over REST.
const V3_EXTRA_RATES: [u32; 3] = [32_000, 44_100, 48_000];

/// Sarvam over HTTP, one request per generation.
#[derive(Debug, Clone)]
pub struct SarvamRest {
    endpoint: TtsEndpoint,
    timeouts: TtsTimeouts,
    http: reqwest::Client,
}

impl SarvamRest {
    pub fn new(endpoint: TtsEndpoint) -> Self {
        let timeouts = TtsTimeouts::default();
        Self {
            endpoint,
            http: http_client(timeouts),
            timeouts,
        }
    }

    /// A client from the server's `[sarvam]` section.
    pub fn from_config(config: &ProviderConfig) -> Self {
        Self::new(TtsEndpoint {
            base_url: config.base_url.clone(),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
        })
    }

    pub fn with_timeouts(mut self, timeouts: TtsTimeouts) -> Self {
        self.timeouts = timeouts;
        self.http = http_client(timeouts);
        self
    }

    fn requests(&self, params: &TtsParams) -> Result<RestRequests, TtsError> {
        let TtsConfig::Sarvam(voice) = &params.voice else {
            return Err(TtsError::Misconfigured(
                "the Sarvam client was given a voice of another provider".to_owned(),
            ));
        };
        let model = resolve_model(voice.model.as_deref(), &self.endpoint, DEFAULT_MODEL);
        let is_v3 = model.starts_with("bulbul:v3");
        let output = params.output;
        let supported = SAMPLE_RATES.contains(&output.sample_rate)
            || (is_v3 && V3_EXTRA_RATES.contains(&output.sample_rate));
        if !supported {
            return Err(TtsError::UnsupportedFormat(output));
        }
        Ok(RestRequests {
            url: ws::http_url(&self.endpoint.base_url, "/text-to-speech")?,
            api_key: resolve_api_key(voice.api_key.as_deref(), &self.endpoint)?,
            speaker: voice.speaker.to_lowercase(),
            language: voice.target_language_code.clone(),
            max_chars: if is_v3 { 2500 } else { 1500 },
            model,
            output,
            http: self.http.clone(),
        })
    }
}

impl TextToSpeech for SarvamRest {
    fn connect(&self, params: TtsParams) -> BoxFuture<'static, Result<TtsSession, TtsError>> {
        let requests = self.requests(&params);
        let timeouts = self.timeouts;
        let playout = params.playout.clone();
        Box::pin(async move {
            let requests = requests?;
            let encoding = requests.output.encoding;
            Ok(http_session::spawn(
                Arc::new(requests),
                encoding,
                timeouts,
                playout,
            ))
        })
    }
}

#[derive(Serialize)]
struct RestRequest<'a> {
    text: &'a str,
    target_language_code: &'a str,
    speaker: &'a str,
    model: &'a str,
    speech_sample_rate: u32,
}

#[derive(Deserialize)]
struct RestResponse {
    #[serde(default)]
    audios: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: String,
}

struct RestRequests {
    url: url::Url,
    api_key: String,
    speaker: String,
    language: String,
    model: String,
    max_chars: usize,
    output: AudioFormat,
    http: reqwest::Client,
}

impl RestRequests {
    async fn request(&self, text: &str) -> Result<Vec<Bytes>, TtsError> {
        let body = RestRequest {
            text,
            target_language_code: &self.language,
            speaker: &self.speaker,
            model: &self.model,
            speech_sample_rate: self.output.sample_rate,
        };
        let response = self
            .http
            .post(self.url.clone())
            .header("api-subscription-key", &self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| http_session::request_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = http_session::error_body(response).await;
            let message = match serde_json::from_str::<ErrorBody>(&body) {
                Ok(e) if !e.error.code.is_empty() => {
                    format!("{} ({})", e.error.message, e.error.code)
                }
                Ok(e) => e.error.message,
                Err(_) => body,
            };
            return Err(ws::status_error(status.as_u16(), message));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| TtsError::Closed(format!("response broke: {e}")))?;
        let answer: RestResponse = serde_json::from_slice(&body)
            .map_err(|e| TtsError::Protocol(format!("unreadable response: {e}")))?;
        if answer.audios.is_empty() {
            return Err(TtsError::Protocol("response without audios".into()));
        }
        answer
            .audios
            .iter()
            .map(|b64| self.decode_audio(b64))
            .collect()
    }

    /// One `audios[]` entry as audio in the output format.
    fn decode_audio(&self, b64: &str) -> Result<Bytes, TtsError> {
        let file = STANDARD_PAD_INDIFFERENT
            .decode(b64)
            .map_err(|e| TtsError::Protocol(format!("audio is not base64: {e}")))?;
        let pcm = wav::parse_pcm16(Bytes::from(file))?;
        if pcm.sample_rate != self.output.sample_rate {
            return Err(TtsError::Protocol(format!(
                "asked for {} Hz, got {} Hz",
                self.output.sample_rate, pcm.sample_rate
            )));
        }
        Ok(match self.output.encoding {
            Encoding::Pcm16 => pcm.samples,
            Encoding::Mulaw => encode_g711(&pcm.samples, g711::mulaw_encode),
            Encoding::Alaw => encode_g711(&pcm.samples, g711::alaw_encode),
        })
    }
}

fn encode_g711(pcm16: &[u8], encode: fn(i16) -> u8) -> Bytes {
    pcm16
        .chunks_exact(2)
        .map(|s| encode(i16::from_le_bytes([s[0], s[1]])))
        .collect::<Vec<u8>>()
        .into()
}

impl Synthesize for RestRequests {
    fn synthesize(&self, text: String) -> BoxStream<'static, Result<Bytes, TtsError>> {
        let pieces = split_text(&text, self.max_chars);
        let this = RestRequests {
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            speaker: self.speaker.clone(),
            language: self.language.clone(),
            model: self.model.clone(),
            max_chars: self.max_chars,
            output: self.output,
            http: self.http.clone(),
        };
        let this = Arc::new(this);
        // Pieces are requested one after the other, each when the previous one's audio is out.
        stream::iter(pieces)
            .then(move |piece| {
                let this = this.clone();
                async move { this.request(&piece).await }
            })
            .flat_map(|result| match result {
                Ok(audios) => stream::iter(audios.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::iter(vec![Err(e)]).right_stream(),
            })
            .boxed()
    }
}

/// `text` cut into pieces of at most `max_chars` characters, at whitespace where possible.
fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max_chars {
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit]
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        pieces.push(rest[..cut].trim().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_at_words() {
        assert_eq!(split_text("short", 10), ["short"]);
        assert_eq!(
            split_text("one two three four", 9),
            ["one two", "three", "four"]
        );
        assert_eq!(split_text("abcdefghijkl", 5), ["abcde", "fghij", "kl"]);
        let hindi = "नमस्ते आपका अपॉइंटमेंट";
        for piece in split_text(hindi, 8) {
            assert!(piece.chars().count() <= 8, "{piece}");
        }
    }

    #[test]
    fn g711_from_pcm() {
        let pcm: Vec<u8> = [0i16, 1000, -1000]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            &encode_g711(&pcm, g711::mulaw_encode)[..],
            &[0xFF, 0xCE, 0x4E]
        );
    }
}
