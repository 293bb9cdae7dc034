//! What a fake streaming provider saw, and the faults a test asks it to stage.
//!
//! Tests assert on what the client actually put on the wire (query, headers, audio bytes,
//! control messages in order, how the stream ended), so every fake WebSocket session records
//! itself here. Faults (refuse the next handshake with a status, close or stall a stream after
//! some audio) are keyed on the audio timeline so tests stay deterministic.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::HeaderMap;

/// One WebSocket session as the fake saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedStream {
    /// Query parameters in order (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// Request headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Requested WebSocket subprotocols.
    pub protocols: Vec<String>,
    /// Audio messages received (non-empty).
    pub audio_messages: u64,
    /// Audio bytes as the client encoded them (after base64 decoding, for Sarvam).
    pub audio_bytes: u64,
    /// Milliseconds of audio received.
    pub audio_ms: u64,
    /// Control messages in order (`KeepAlive`, `Finalize`, `CloseStream`, `flush`, ...).
    pub control: Vec<String>,
    /// Client mistakes the fake answered with an error (what the real service rejects).
    pub rejected: Vec<String>,
    /// Close frame the fake sent, if it closed the stream.
    pub closed_with: Option<(u16, String)>,
    /// The client closed (or dropped) the socket.
    pub client_closed: bool,
}

impl ReceivedStream {
    /// The first value of query parameter `key`.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A handshake the fake refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedHandshake {
    pub status: u16,
    pub reason: String,
}

/// A failure to stage on the next accepted stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// Close with `code`/`reason` once `audio_ms` of audio has arrived (mid-turn close).
    CloseAfterAudio {
        audio_ms: u64,
        code: u16,
        reason: String,
    },
    /// Stop reading the socket (and so stop answering pings) once `audio_ms` has arrived.
    StallAfterAudio { audio_ms: u64 },
}

/// Shared state behind a fake's handle.
#[derive(Debug, Default)]
pub(crate) struct StreamLog {
    streams: Mutex<Vec<Arc<Mutex<ReceivedStream>>>>,
    refused: Mutex<Vec<RefusedHandshake>>,
    scripted_refusals: Mutex<VecDeque<u16>>,
    faults: Mutex<VecDeque<StreamFault>>,
}

/// A poisoned lock only means a test thread panicked while holding it; the data is still the
/// best record there is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamLog {
    pub(crate) fn streams(&self) -> Vec<ReceivedStream> {
        lock(&self.streams)
            .iter()
            .map(|s| lock(s).clone())
            .collect()
    }

    pub(crate) fn refused(&self) -> Vec<RefusedHandshake> {
        lock(&self.refused).clone()
    }

    pub(crate) fn refuse_next(&self, status: u16) {
        lock(&self.scripted_refusals).push_back(status);
    }

    pub(crate) fn take_scripted_refusal(&self) -> Option<u16> {
        lock(&self.scripted_refusals).pop_front()
    }

    pub(crate) fn stage_fault(&self, fault: StreamFault) {
        lock(&self.faults).push_back(fault);
    }

    pub(crate) fn record_refusal(&self, status: u16, reason: impl Into<String>) {
        lock(&self.refused).push(RefusedHandshake {
            status,
            reason: reason.into(),
        });
    }

    /// Registers an accepted stream; returns its record and the fault staged for it.
    pub(crate) fn open_stream(
        &self,
        query: Vec<(String, String)>,
        headers: &HeaderMap,
        protocols: Vec<String>,
    ) -> (StreamRecord, Option<StreamFault>) {
        let record = ReceivedStream {
            query,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            protocols,
            ..ReceivedStream::default()
        };
        let record = Arc::new(Mutex::new(record));
        lock(&self.streams).push(record.clone());
        let fault = lock(&self.faults).pop_front();
        (StreamRecord(record), fault)
    }
}

/// The record of one stream, updated as it runs.
#[derive(Debug, Clone)]
pub(crate) struct StreamRecord(Arc<Mutex<ReceivedStream>>);

impl StreamRecord {
    pub(crate) fn update(&self, f: impl FnOnce(&mut ReceivedStream)) {
        f(&mut lock(&self.0));
    }
}

/// Query string as ordered pairs.
pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}
