//! Cartesia over HTTP (`POST /tts/bytes`): a fallback when a WebSocket is not wanted. One request
//! per generation once its text is complete, asking for the transport's format in a `raw`
//! container; the body is streamed into audio events as it arrives. Higher first-audio latency
//! than [`super::CartesiaTts`] (the whole turn's text is needed first), no word timestamps.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::cartesia::{CartesiaSetup, DEFAULT_VERSION, OutputFormat, VoiceSpecifier};
use super::http_session::{self, Synthesize};
use super::{TextToSpeech, TtsEndpoint, TtsError, TtsParams, TtsSession, TtsTimeouts, ws};
use crate::config::CartesiaConfig;

/// Cartesia over HTTP, one request per generation.
#[derive(Debug, Clone)]
pub struct CartesiaBytes {
    endpoint: TtsEndpoint,
    version: String,
    timeouts: TtsTimeouts,
    http: reqwest::Client,
}

impl CartesiaBytes {
    /// A client for `endpoint`, sending `Cartesia-Version: version` (empty: the default).
    pub fn new(endpoint: TtsEndpoint, version: impl Into<String>) -> Self {
        let version = version.into();
        let timeouts = TtsTimeouts::default();
        Self {
            endpoint,
            version: if version.trim().is_empty() {
                DEFAULT_VERSION.to_owned()
            } else {
                version
            },
            http: http_client(timeouts),
            timeouts,
        }
    }

    /// A client from the server's `[cartesia]` section.
    pub fn from_config(config: &CartesiaConfig) -> Self {
        Self::new(
            TtsEndpoint {
                base_url: config.base_url.clone(),
                api_key: config.api_key.clone(),
                model: config.model.clone(),
            },
            config.version.clone(),
        )
    }

    pub fn with_timeouts(mut self, timeouts: TtsTimeouts) -> Self {
        self.timeouts = timeouts;
        self.http = http_client(timeouts);
        self
    }
}

/// A pooled client shared by every call of this provider (connections are reused).
pub(crate) fn http_client(timeouts: TtsTimeouts) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl TextToSpeech for CartesiaBytes {
    fn connect(&self, params: TtsParams) -> BoxFuture<'static, Result<TtsSession, TtsError>> {
        let prepared =
            CartesiaSetup::new(&self.endpoint, &self.version, &params).and_then(|setup| {
                Ok(BytesRequests {
                    url: ws::http_url(&setup.base_url, "/tts/bytes")?,
                    setup,
                    http: self.http.clone(),
                })
            });
        let timeouts = self.timeouts;
        let playout = params.playout.clone();
        Box::pin(async move {
            let requests = prepared?;
            let encoding = requests.setup.output.encoding;
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
struct BytesRequest<'a> {
    model_id: &'a str,
    transcript: &'a str,
    voice: VoiceSpecifier<'a>,
    language: &'a str,
    output_format: OutputFormat<'a>,
}

struct BytesRequests {
    setup: CartesiaSetup,
    url: url::Url,
    http: reqwest::Client,
}

impl Synthesize for BytesRequests {
    fn synthesize(&self, text: String) -> BoxStream<'static, Result<Bytes, TtsError>> {
        let body = BytesRequest {
            model_id: &self.setup.model_id,
            transcript: &text,
            voice: VoiceSpecifier {
                mode: "id",
                id: &self.setup.voice_id,
            },
            language: &self.setup.language,
            output_format: OutputFormat {
                container: "raw",
                encoding: self.setup.encoding,
                sample_rate: self.setup.output.sample_rate,
            },
        };
        let request = self
            .http
            .post(self.url.clone())
            .header("authorization", self.setup.auth_header())
            .header("cartesia-version", &self.setup.version)
            .json(&body);
        let response = async move {
            let response = request
                .send()
                .await
                .map_err(|e| http_session::request_error(&e))?;
            let status = response.status();
            if !status.is_success() {
                let message = http_session::error_body(response).await;
                return Err(ws::status_error(status.as_u16(), message));
            }
            Ok(response
                .bytes_stream()
                .map_err(|e| TtsError::Closed(format!("audio stream broke: {e}"))))
        };
        stream::once(response).try_flatten().boxed()
    }
}
