//! Audio on the hot path of every call: formats, G.711 codecs, resampling, voice activity
//! detection, WAV files and outbound frame pacing.

pub mod format;
pub mod frame;
pub mod g711;
pub mod pacer;
pub mod resample;
pub mod vad;
pub mod wav;

pub use format::{AudioFormat, Encoding};
pub use frame::{FRAME_MS, Frame, samples_for_ms};
pub use resample::{ResampleError, Resampler};
