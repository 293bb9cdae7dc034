//! Protocol-faithful fake providers. Each fake speaks its provider's real wire format (paths,
//! auth headers, JSON fields, audio encodings), checks what clients send and answers mistakes the
//! way the real service does. The fakes' routes do not overlap, so `voxbridge sim` serves all of
//! them on one port; tests and benchmarks start them in-process.

pub mod cartesia;
mod latency;
mod recorded;
pub mod sarvam_tts;
pub mod voice;

pub use latency::Latency;
pub use recorded::RecordedRequest;
