//! Protocol-faithful fake providers. Each fake speaks its provider's real wire format (paths,
//! auth headers, JSON fields, audio encodings), checks what clients send and answers mistakes the
//! way the real service does. The fakes' routes do not overlap, so `voxbridge sim` serves all of
//! them on one port; tests and benchmarks start them in-process.

pub mod caller;
pub mod cartesia;
pub mod deepgram;
pub mod exotel;
mod latency;
pub mod mcp;
pub mod openai;
mod outbox;
pub mod plivo;
pub mod precise_timer;
mod recorded;
pub mod sarvam_stt;
pub mod sarvam_tts;
pub mod speech_detector;
pub mod stream_log;
pub mod stt_script;
pub mod suite;
pub mod telnyx;
pub mod twilio;
pub mod voice;
pub mod vonage;

pub use latency::Latency;
pub use recorded::RecordedRequest;
