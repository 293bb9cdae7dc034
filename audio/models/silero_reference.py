#!/usr/bin/env python3
"""Reference Silero VAD probabilities for the Rust implementation's test.

Runs the official ONNX export with onnxruntime, 512-sample windows at 16 kHz with the 64-sample
context carried between windows, exactly as the silero-vad package's OnnxWrapper does, and prints
one probability per window. Usage (needs `pip install onnxruntime numpy` and the model from the
silero-vad 6.2.3 wheel, see README.md):

    python3 silero_reference.py silero_vad.onnx ../vad/noisy_speech_16k.wav > reference_noisy_speech_16k.txt
"""
import sys
import wave

import numpy as np
import onnxruntime

model_path, wav_path = sys.argv[1], sys.argv[2]
with wave.open(wav_path) as w:
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0

opts = onnxruntime.SessionOptions()
opts.inter_op_num_threads = 1
opts.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
state = np.zeros((2, 1, 128), dtype=np.float32)
context = np.zeros((1, 64), dtype=np.float32)
for start in range(0, len(audio) - 511, 512):
    x = np.concatenate([context, audio[None, start:start + 512]], axis=1)
    out, state = session.run(None, {"input": x, "state": state, "sr": np.array(16000, dtype=np.int64)})
    context = x[:, -64:]
    print(f"{float(out[0][0]):.6f}")
