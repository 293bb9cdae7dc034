//! Silero VAD v6 (16 kHz), run in plain Rust: the neural half of the cascade.
//!
//! Why not an ONNX runtime: the network is small (a Hann-windowed STFT, four 1-D convolutions,
//! one LSTM cell, one output unit; 309 k weights) and a runtime would add minutes of build
//! (tract) or a native library (onnxruntime) to run it. This file evaluates the same graph from
//! the model's official weights, which are compiled into the binary
//! (`audio/models/silero_vad_v6_16k.safetensors`, 0.98 MB, MIT: extracted from the `silero-vad`
//! 6.2.3 wheel's ONNX export by `audio/models/extract_weights.py`). Its output matches
//! onnxruntime running the official `silero_vad.onnx` to within 1e-4 (test against
//! `audio/models/reference_noisy_speech_16k.txt`).
//!
//! The weights are decoded once into [`SileroModel::shared`] and read by every call; a
//! [`Silero`] stream state is 1 KiB (LSTM state and 64 samples of context); the working
//! buffers are per thread, so they cost nothing per call.
//!
//! One step takes 512 samples at 16 kHz (32 ms) and answers the probability that they are speech.
//! The STFT layer is computed with a 256-point real FFT instead of the model's 258×256 matrix;
//! the weights are exactly the periodic Hann window times the DFT basis, so the result is the
//! same to rounding.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Samples per step at 16 kHz.
pub const WINDOW: usize = 512;
/// Samples of the previous step prepended to each step, as the official wrapper does.
const CONTEXT: usize = 64;
const FFT_SIZE: usize = 256;
const HOP: usize = 128;
const BINS: usize = FFT_SIZE / 2 + 1;
/// STFT frames per step: (CONTEXT + WINDOW + reflect padding 64 - FFT_SIZE) / HOP + 1.
const FRAMES: usize = 4;
const HIDDEN: usize = 128;

static WEIGHTS: &[u8] = include_bytes!("../../../audio/models/silero_vad_v6_16k.safetensors");

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("safetensors: {0}")]
    Format(&'static str),
    #[error("tensor {name}: expected {expected} f32 values, found {found}")]
    Shape {
        name: String,
        expected: usize,
        found: usize,
    },
}

/// A 1-D convolution with kernel 3 and padding 1, weights stored `[out][tap][in]` so each tap
/// is one contiguous dot product over the input channels.
struct Conv {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    fn new(weight_oik: &[f32], bias: Vec<f32>, inputs: usize, outputs: usize) -> Self {
        let mut weight = vec![0.0; outputs * 3 * inputs];
        for o in 0..outputs {
            for i in 0..inputs {
                for k in 0..3 {
                    weight[(o * 3 + k) * inputs + i] = weight_oik[(o * inputs + i) * 3 + k];
                }
            }
        }
        Self {
            inputs,
            outputs,
            weight,
            bias,
        }
    }

    /// `input` is time-major (`frames × inputs`); writes ReLU(conv) time-major into `output`.
    fn forward(
        &self,
        dot: Dot,
        input: &[f32],
        frames: usize,
        stride: usize,
        output: &mut [f32],
    ) -> usize {
        let out_frames = (frames + 2 - 3) / stride + 1;
        for t in 0..out_frames {
            for o in 0..self.outputs {
                let mut acc = self.bias[o];
                for k in 0..3 {
                    let Some(p) = (t * stride + k).checked_sub(1) else {
                        continue;
                    };
                    if p >= frames {
                        continue;
                    }
                    let w = &self.weight[(o * 3 + k) * self.inputs..(o * 3 + k + 1) * self.inputs];
                    acc += dot(w, &input[p * self.inputs..(p + 1) * self.inputs]);
                }
                output[t * self.outputs + o] = acc.max(0.0);
            }
        }
        out_frames
    }
}

/// The decoded network, shared read-only by every stream.
pub struct SileroModel {
    window: [f32; FFT_SIZE],
    fft: Arc<dyn RealToComplex<f32>>,
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    conv4: Conv,
    /// LSTM weights `[4 × HIDDEN][x ‖ h]`, gates in PyTorch order (input, forget, cell, output).
    lstm_weight: Vec<f32>,
    /// `bias_ih + bias_hh`.
    lstm_bias: Vec<f32>,
    out_weight: Vec<f32>,
    out_bias: f32,
}

impl SileroModel {
    /// The model compiled into the binary, decoded on first use (about 1.2 MB, once per process).
    pub fn shared() -> &'static SileroModel {
        static MODEL: OnceLock<SileroModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            SileroModel::from_safetensors(WEIGHTS)
                .expect("the embedded Silero weights are checked by the tests")
        })
    }

    /// Decodes the network from a safetensors file laid out as `extract_weights.py` writes it.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ModelError> {
        let tensors = Tensors::parse(bytes)?;
        let conv = |name: &str, inputs: usize, outputs: usize| -> Result<Conv, ModelError> {
            let weight = tensors.get(&format!("{name}.weight"), outputs * inputs * 3)?;
            let bias = tensors.get(&format!("{name}.bias"), outputs)?;
            Ok(Conv::new(&weight, bias, inputs, outputs))
        };
        let w_ih = tensors.get("lstm_cell.weight_ih", 4 * HIDDEN * HIDDEN)?;
        let w_hh = tensors.get("lstm_cell.weight_hh", 4 * HIDDEN * HIDDEN)?;
        let mut lstm_weight = Vec::with_capacity(4 * HIDDEN * 2 * HIDDEN);
        for row in 0..4 * HIDDEN {
            lstm_weight.extend_from_slice(&w_ih[row * HIDDEN..(row + 1) * HIDDEN]);
            lstm_weight.extend_from_slice(&w_hh[row * HIDDEN..(row + 1) * HIDDEN]);
        }
        let lstm_bias = tensors
            .get("lstm_cell.bias_ih", 4 * HIDDEN)?
            .iter()
            .zip(tensors.get("lstm_cell.bias_hh", 4 * HIDDEN)?)
            .map(|(a, b)| a + b)
            .collect();
        let mut window = [0.0; FFT_SIZE];
        for (k, w) in window.iter_mut().enumerate() {
            *w = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / FFT_SIZE as f64).cos())
                as f32;
        }
        Ok(Self {
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE),
            conv1: conv("conv1", BINS, 128)?,
            conv2: conv("conv2", 128, 64)?,
            conv3: conv("conv3", 64, 64)?,
            conv4: conv("conv4", 64, 128)?,
            lstm_weight,
            lstm_bias,
            out_weight: tensors.get("final_conv.weight", HIDDEN)?,
            out_bias: tensors.get("final_conv.bias", 1)?[0],
        })
    }
}

/// The tensors of a safetensors file: an 8-byte length, a JSON header, then raw data.
struct Tensors<'a> {
    header: serde_json::Map<String, serde_json::Value>,
    data: &'a [u8],
}

impl<'a> Tensors<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(ModelError::Format("file too short"))?;
        let header_len = usize::try_from(u64::from_le_bytes(len_bytes))
            .map_err(|_| ModelError::Format("header length"))?;
        let header = bytes
            .get(8..8 + header_len)
            .ok_or(ModelError::Format("header past the end"))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|_| ModelError::Format("header is not JSON"))?;
        Ok(Self {
            header,
            data: &bytes[8 + header_len..],
        })
    }

    fn get(&self, name: &str, expected: usize) -> Result<Vec<f32>, ModelError> {
        let entry = self
            .header
            .get(name)
            .ok_or(ModelError::Format("missing tensor"))?;
        if entry.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            return Err(ModelError::Format("tensor is not F32"));
        }
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .ok_or(ModelError::Format("missing data_offsets"))?;
        let bound = |i: usize| offsets.get(i).and_then(|v| v.as_u64()).map(|v| v as usize);
        let (Some(start), Some(end)) = (bound(0), bound(1)) else {
            return Err(ModelError::Format("bad data_offsets"));
        };
        let raw = self
            .data
            .get(start..end)
            .ok_or(ModelError::Format("tensor past the end"))?;
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.len() != expected {
            return Err(ModelError::Shape {
                name: name.to_owned(),
                expected,
                found: values.len(),
            });
        }
        Ok(values)
    }
}

/// Working buffers of one evaluation; one set per thread, since a step never yields.
struct Scratch {
    padded: [f32; CONTEXT + WINDOW + 64],
    fft_in: Vec<f32>,
    fft_out: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    spectrum: [f32; FRAMES * BINS],
    a: [f32; FRAMES * 128],
    b: [f32; FRAMES * 128],
    gates: [f32; 4 * HIDDEN],
    lstm_in: [f32; 2 * HIDDEN],
    dot: Dot,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// The state of one audio stream through the model: 1 KiB.
#[derive(Clone)]
pub struct Silero {
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
    context: [f32; CONTEXT],
}

impl Default for Silero {
    fn default() -> Self {
        Self::new()
    }
}

impl Silero {
    pub fn new() -> Self {
        Self {
            h: [0.0; HIDDEN],
            c: [0.0; HIDDEN],
            context: [0.0; CONTEXT],
        }
    }

    /// Forgets the stream (LSTM state and context), as at the start of a new one.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Probability (0..1) that `window` (512 samples at 16 kHz, full scale ±1.0) is speech,
    /// given the stream so far.
    pub fn process(&mut self, window: &[f32; WINDOW]) -> f32 {
        let model = SileroModel::shared();
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            let s = slot.get_or_insert_with(|| Scratch {
                padded: [0.0; CONTEXT + WINDOW + 64],
                fft_in: model.fft.make_input_vec(),
                fft_out: model.fft.make_output_vec(),
                fft_scratch: model.fft.make_scratch_vec(),
                spectrum: [0.0; FRAMES * BINS],
                a: [0.0; FRAMES * 128],
                b: [0.0; FRAMES * 128],
                gates: [0.0; 4 * HIDDEN],
                lstm_in: [0.0; 2 * HIDDEN],
                dot: dot_kernel(),
            });
            self.step(model, s, window)
        })
    }

    fn step(&mut self, model: &SileroModel, s: &mut Scratch, window: &[f32; WINDOW]) -> f32 {
        // Context, window, then 64 samples of reflection padding on the right.
        let n = CONTEXT + WINDOW;
        s.padded[..CONTEXT].copy_from_slice(&self.context);
        s.padded[CONTEXT..n].copy_from_slice(window);
        for j in 0..64 {
            s.padded[n + j] = s.padded[n - 2 - j];
        }
        self.context.copy_from_slice(&window[WINDOW - CONTEXT..]);

        // STFT magnitudes, time-major.
        for t in 0..FRAMES {
            for (k, x) in s.fft_in.iter_mut().enumerate() {
                *x = s.padded[t * HOP + k] * model.window[k];
            }
            // Buffer lengths come from the plan itself, so this cannot fail.
            let _ =
                model
                    .fft
                    .process_with_scratch(&mut s.fft_in, &mut s.fft_out, &mut s.fft_scratch);
            for (m, z) in s.spectrum[t * BINS..(t + 1) * BINS]
                .iter_mut()
                .zip(&s.fft_out)
            {
                *m = (z.re * z.re + z.im * z.im).sqrt();
            }
        }

        let dot = s.dot;
        let frames = model.conv1.forward(dot, &s.spectrum, FRAMES, 1, &mut s.a);
        let frames = model.conv2.forward(dot, &s.a, frames, 2, &mut s.b);
        let frames = model.conv3.forward(dot, &s.b, frames, 2, &mut s.a);
        let frames = model.conv4.forward(dot, &s.a, frames, 1, &mut s.b);
        debug_assert_eq!(frames, 1);

        // LSTM cell on [x ‖ h].
        s.lstm_in[..HIDDEN].copy_from_slice(&s.b[..HIDDEN]);
        s.lstm_in[HIDDEN..].copy_from_slice(&self.h);
        for (g, (row, bias)) in s.gates.iter_mut().zip(
            model
                .lstm_weight
                .chunks_exact(2 * HIDDEN)
                .zip(&model.lstm_bias),
        ) {
            *g = dot(row, &s.lstm_in) + bias;
        }
        let mut out = model.out_bias;
        for j in 0..HIDDEN {
            let input = sigmoid(s.gates[j]);
            let forget = sigmoid(s.gates[HIDDEN + j]);
            let cell = s.gates[2 * HIDDEN + j].tanh();
            let output = sigmoid(s.gates[3 * HIDDEN + j]);
            self.c[j] = forget * self.c[j] + input * cell;
            self.h[j] = output * self.c[j].tanh();
            out += model.out_weight[j] * self.h[j].max(0.0);
        }
        sigmoid(out)
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A dot product kernel, chosen once per step for the CPU.
type Dot = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU runs: AVX2 + FMA where available (3× the portable one on
/// the project's machine), else the portable form.
fn dot_kernel() -> Dot {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2_fma_checked;
        }
    }
    dot
}

/// Dot product written with eight independent accumulators so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_fma_checked(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only handed out by `dot_kernel` after detecting AVX2 and FMA on this CPU.
    unsafe { dot_avx2_fma(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY (loads): every load reads 8 floats at i..i + 8 with i + 8 <= n on both slices.
    while i + 16 <= n {
        unsafe {
            acc0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                acc1,
            );
        }
        i += 16;
    }
    if i + 8 <= n {
        unsafe {
            acc0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                acc0,
            );
        }
        i += 8;
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let sum4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    let sum1 = _mm_add_ss(sum2, _mm_shuffle_ps(sum2, sum2, 1));
    let mut total = _mm_cvtss_f32(sum1);
    for j in i..n {
        total += a[j] * b[j];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav;

    #[test]
    fn matches_onnxruntime_on_noisy_speech() {
        let root = env!("CARGO_MANIFEST_DIR");
        let clip = wav::read(format!("{root}/audio/vad/noisy_speech_16k.wav")).unwrap();
        let reference: Vec<f32> = std::fs::read_to_string(format!(
            "{root}/audio/models/reference_noisy_speech_16k.txt"
        ))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
        let mut silero = Silero::new();
        let mut worst = 0.0f32;
        let mut count = 0;
        for (chunk, expected) in clip.samples.chunks_exact(WINDOW).zip(&reference) {
            let mut window = [0.0f32; WINDOW];
            for (w, &s) in window.iter_mut().zip(chunk) {
                *w = f32::from(s) / 32768.0;
            }
            let p = silero.process(&window);
            worst = worst.max((p - expected).abs());
            count += 1;
        }
        assert_eq!(count, reference.len());
        assert!(worst < 1e-4, "largest difference from onnxruntime: {worst}");
    }

    #[test]
    fn dot_kernels_agree() {
        let a: Vec<f32> = (0..259).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..259).map(|i| (i as f32 * 0.11).cos()).collect();
        for n in [0, 1, 7, 8, 15, 16, 17, 129, 256, 259] {
            let (x, y) = (dot(&a[..n], &b[..n]), dot_kernel()(&a[..n], &b[..n]));
            assert!((x - y).abs() < 1e-4, "{n}: {x} vs {y}");
        }
    }

    #[test]
    fn rejects_malformed_weights() {
        assert!(SileroModel::from_safetensors(b"short").is_err());
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(matches!(
            SileroModel::from_safetensors(&bytes),
            Err(ModelError::Format("missing tensor"))
        ));
    }
}
