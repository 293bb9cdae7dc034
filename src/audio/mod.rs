//! Audio on the hot path of every call: formats, G.711 codecs, and (as they land) resampling,
//! voice activity detection, WAV files and outbound frame pacing.

pub mod format;
pub mod g711;

pub use format::{AudioFormat, Encoding};
