//! What a fake remembers about each HTTP request or WebSocket upgrade it received, so tests can
//! assert on headers and query strings the way a provider's logs would show them.

use axum::http::HeaderMap;
use serde::Deserialize;

use super::Latency;

/// One request as a fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub path: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
    /// The status the fake answered (101 for an accepted upgrade).
    pub status: u16,
}

impl RecordedRequest {
    pub(crate) fn new(path: &str, headers: &HeaderMap, query: Option<&str>) -> Self {
        Self {
            path: path.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            query: query.map(str::to_owned),
            status: 0,
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref(), name)
    }
}

pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Latency as fixtures write it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencyMs {
    #[serde(default)]
    pub(crate) first_byte_ms: u64,
    #[serde(default)]
    pub(crate) per_chunk_ms: u64,
}

impl From<LatencyMs> for Latency {
    fn from(ms: LatencyMs) -> Self {
        Latency::from_millis(ms.first_byte_ms, ms.per_chunk_ms)
    }
}

/// Whether `key` is accepted: one of `keys`, or any non-empty key when `keys` is empty.
pub(crate) fn key_accepted(keys: &[String], key: &str) -> bool {
    !key.is_empty() && (keys.is_empty() || keys.iter().any(|k| k == key))
}
