#!/usr/bin/env python3
"""Writes silero_vad_v6_16k.safetensors: the 16 kHz weights of Silero VAD v6 for src/audio/vad/silero.rs.

Source: `silero_vad_openvino_16k.onnx` from the silero-vad 6.2.3 wheel on PyPI (MIT licence, see
LICENSE-silero-vad). Its weights are the ones of the official `silero_vad.onnx`; the wheel's own
`silero_vad_16k.safetensors` holds an older set and does not reproduce it. The STFT basis is left
out: it is exactly a periodic Hann window times the DFT basis, which the Rust code computes with
an FFT. Usage (needs `pip install onnx numpy`):

    pip download silero-vad==6.2.3 --no-deps && unzip silero_vad-6.2.3-py3-none-any.whl
    python3 extract_weights.py silero_vad/data/silero_vad_openvino_16k.onnx
"""
import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper

NAMES = {
    "encoder.0.reparam_conv.weight": "conv1.weight",
    "encoder.0.reparam_conv.bias": "conv1.bias",
    "encoder.1.reparam_conv.weight": "conv2.weight",
    "encoder.1.reparam_conv.bias": "conv2.bias",
    "encoder.2.reparam_conv.weight": "conv3.weight",
    "encoder.2.reparam_conv.bias": "conv3.bias",
    "encoder.3.reparam_conv.weight": "conv4.weight",
    "encoder.3.reparam_conv.bias": "conv4.bias",
    "decoder.rnn.weight_ih": "lstm_cell.weight_ih",
    "decoder.rnn.weight_hh": "lstm_cell.weight_hh",
    "decoder.rnn.bias_ih": "lstm_cell.bias_ih",
    "decoder.rnn.bias_hh": "lstm_cell.bias_hh",
    "decoder.decoder.2.weight": "final_conv.weight",
    "decoder.decoder.2.bias": "final_conv.bias",
}

model = onnx.load(sys.argv[1])
found = {}
for node in model.graph.node:
    if node.op_type == "Constant":
        for attr in node.attribute:
            if attr.name == "value":
                found[node.output[0]] = numpy_helper.to_array(attr.t)
for init in model.graph.initializer:
    found[init.name] = numpy_helper.to_array(init)

tensors = {}
for source, target in NAMES.items():
    (key,) = [k for k in found if k.endswith(source)]
    tensors[target] = np.ascontiguousarray(found[key], dtype="<f4")

header, blobs, offset = {"__metadata__": {"source": "silero-vad 6.2.3 silero_vad_openvino_16k.onnx", "license": "MIT"}}, [], 0
for name, array in tensors.items():
    blob = array.tobytes()
    header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
header_bytes = json.dumps(header).encode()
header_bytes += b" " * (-len(header_bytes) % 8)
with open("silero_vad_v6_16k.safetensors", "wb") as out:
    out.write(struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(blobs))
