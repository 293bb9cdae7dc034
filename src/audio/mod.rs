//! Audio on the hot path of every call: formats, G.711, resampling, voice activity detection,
//! WAV files and outbound pacing. Everything here works per call on 20 ms frames, allocates
//! nothing per frame, and holds no locks; shared data (codec tables, the VAD model) is
//! read-only.
//!
//! How the other stages use it:
//!
//! | stage | what to use |
//! |---|---|
//! | transport reader (Twilio μ-law 8 kHz in) | [`g711::decode_mulaw`] into a `[i16; 160]` (or [`Frame::from_mulaw`]) |
//! | browser reader (PCM16 48 kHz in) | one [`Resampler`]`::new(48_000, 16_000)` per call; `push` each message, get 20 ms frames |
//! | barge-in | one [`vad::CascadeVad`] per call with the assistant's [`vad::VadConfig`]; `process` every inbound 8/16 kHz frame |
//! | STT sender | pass μ-law through when the provider takes it ([`AudioFormat`] equality), else resample once |
//! | TTS → transport writer | one [`Resampler`] per TTS stream if the rates differ, then [`g711::encode_mulaw`]; one [`pacer::Pacer`] + [`pacer::FrameClock`] per call; `flush()` on barge-in |
//! | tests, filler sounds | [`wav::read`] / [`wav::write`]; assets under `audio/` (see `audio/README.md`) |
//!
//! Module map:
//! - [`format`]: [`AudioFormat`] and [`Encoding`], the names of wire formats.
//! - [`frame`]: [`Frame`], PCM16 samples + rate, and the 20 ms convention ([`FRAME_MS`]).
//! - [`g711`]: μ-law and A-law, table-driven, bit-exact with sox (ITU-T G.711 code tables).
//! - [`resample`]: [`Resampler`], one stateful rubato FFT resampler per stream, 20 ms frames out.
//! - [`vad`]: the [`vad::Vad`] trait, [`vad::VadConfig`], and the energy + Silero cascade.
//! - [`pacer`]: [`pacer::Pacer`] and [`pacer::FrameClock`], real-time outbound frames.
//! - [`playout`]: [`playout::PlayoutItem`], what a paced output takes (audio and marks).
//! - [`wav`]: mono PCM16 WAV in and out (hound).

pub mod dtmf;
pub mod format;
pub mod frame;
pub mod g711;
pub mod pacer;
pub mod playout;
pub mod resample;
pub mod vad;
pub mod wav;

pub use format::{AudioFormat, Encoding};
pub use frame::{FRAME_MS, Frame, samples_for_ms};
pub use pacer::{FrameClock, Pacer};
pub use resample::{ResampleError, Resampler};
pub use vad::{CascadeVad, Vad, VadConfig, VadEvent};
