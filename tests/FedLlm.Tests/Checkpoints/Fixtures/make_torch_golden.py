"""Writes torch_golden.safetensors and torch_golden.json for SafeTensorsGoldenTests.

Run with Debian's /usr/bin/python3 (torch 1.13, numpy); the `safetensors` package is not needed and not used, so the
file layout below is built by hand from the format description, independently of FedLlm's writer. The bytes of every
tensor come from torch itself, and the expected values are torch's own conversion to float32 (tensor.to(torch.float32)),
so the C# test checks FedLlm's BF16/F16 -> F32 conversion against PyTorch, not against itself.

    /usr/bin/python3 tests/FedLlm.Tests/Checkpoints/Fixtures/make_torch_golden.py
"""
import json
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

values = [1.0, -2.5, 1.0 / 3.0, 1e-3, 3.0e38, -7.0e-39, 65504.0, 6.0e-8, float("inf"), -0.0, 0.1, 1234.5678]
tensors = {
    # Header order differs from data order on purpose: readers must use data_offsets, not position.
    "model.layers.0.self_attn.q_proj.weight": torch.tensor(values).to(torch.bfloat16).reshape(3, 4),
    "model.norm.weight": torch.tensor(values).to(torch.float16),
    "lm_head.weight": torch.tensor(values, dtype=torch.float32).reshape(2, 6),
    "positions": torch.tensor([0, -1, 2**40 + 3, -(2**62)], dtype=torch.int64),
    "mask": torch.tensor([True, False, False, True, True]),
    "scale": torch.tensor(0.125, dtype=torch.float64),
    "empty": torch.zeros(0, 3, dtype=torch.float32),
}
names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
         torch.int64: "I64", torch.bool: "BOOL"}


def raw(t):
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: take the same 16 bits as int16
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()  # little-endian on x86


data_order = ["lm_head.weight", "positions", "scale", "model.layers.0.self_attn.q_proj.weight",
              "model.norm.weight", "mask", "empty"]
offsets, blob = {}, b""
for name in data_order:
    b = raw(tensors[name])
    offsets[name] = [len(blob), len(blob) + len(b)]
    blob += b

header = {"__metadata__": {"format": "pt", "source": "torch " + torch.__version__}}
for name, t in tensors.items():
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": offsets[name]}
text = json.dumps(header, separators=(",", ":")).encode("utf-8")
text += b" " * (-len(text) % 8)
with open(os.path.join(HERE, "torch_golden.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + blob)

expected = {}
for name, t in tensors.items():
    entry = {"dtype": names[t.dtype], "shape": list(t.shape)}
    if t.is_floating_point():
        # Bit patterns, so inf, -0.0 and subnormals survive JSON exactly.
        f32 = t.to(torch.float32).flatten()
        entry["float32_bits"] = [struct.unpack("<I", struct.pack("<f", v))[0] for v in f32.tolist()]
    else:
        entry["int64"] = [int(v) for v in t.to(torch.int64).flatten().tolist()]
    expected[name] = entry
with open(os.path.join(HERE, "torch_golden.json"), "w") as f:
    json.dump(expected, f, indent=2)
    f.write("\n")
