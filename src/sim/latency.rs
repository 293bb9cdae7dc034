//! Configurable delays of a fake provider, so tests, benchmarks and the load generator can
//! reproduce a provider's timing (and so "added latency" can be computed as measured minus
//! configured).

use std::time::Duration;

/// How slowly a fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Delay before the first byte (or first event) of an answer.
    pub first_byte: Duration,
    /// Delay between consecutive chunks of a streamed answer.
    pub per_chunk: Duration,
}

impl Latency {
    /// No delay at all: the default for unit tests.
    pub const NONE: Latency = Latency {
        first_byte: Duration::ZERO,
        per_chunk: Duration::ZERO,
    };

    pub fn from_millis(first_byte_ms: u64, per_chunk_ms: u64) -> Self {
        Self {
            first_byte: Duration::from_millis(first_byte_ms),
            per_chunk: Duration::from_millis(per_chunk_ms),
        }
    }
}
