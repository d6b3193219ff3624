"""Golden bf16 / fp16 casts for FedLlm's transfer codec (tests/FedLlm.Tests/Federation/Transfer/TensorCodecTests.cs).

The C# codec casts with libtorch, so comparing it with TorchSharp's own cast would check nothing; this file pins the
bits PyTorch (Debian's torch 1.13 here) gives for hand-picked hard cases: exact ties (round to nearest even, which
truncation or round-half-up get wrong), values one ulp either side of a tie, subnormals, overflow to Inf, signed zero,
plus 64 seeded normals.

    /usr/bin/python3 tests/reference/transfer_casts.py            # rewrite the golden file
    /usr/bin/python3 tests/reference/transfer_casts.py --check    # exit 1 if the committed file differs
"""
import json
import pathlib
import sys

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "FedLlm.Tests/Fixtures/golden/transfer/casts.json"

HARD_BITS = [
    0x3F800000,  # 1.0
    0x3F808000,  # tie between bf16 0x3F80 and 0x3F81 -> even 0x3F80
    0x3F818000,  # tie between bf16 0x3F81 and 0x3F82 -> even 0x3F82
    0x3F808001,  # just above a tie -> up
    0x3F807FFF,  # just below a tie -> down
    0xBF818000,  # negative tie -> even
    0x3F801000,  # fp16 tie: 1 + 2^-11 between fp16 0x3C00 and 0x3C01 -> even 0x3C00
    0x3F803000,  # fp16 tie: 1 + 3*2^-11 -> even 0x3C02
    0x477FF000,  # 65520: fp16 rounds to Inf, bf16 finite
    0x477FE000,  # 65504: fp16 max
    0x33800000,  # 2^-24: smallest fp16 subnormal
    0x33000000,  # 2^-25: fp16 tie between 0 and 2^-24 -> 0
    0x00400000,  # fp32 subnormal
    0x80000000,  # -0.0
    0x7F7FFFFF,  # fp32 max: bf16 rounds to Inf
    0x7F800000,  # +Inf
    0xFF800000,  # -Inf
]


def bits_to_f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def main():
    rng = np.random.default_rng(2026)
    normals = (rng.standard_normal(64) * 0.05).astype(np.float32)
    inputs = np.concatenate([bits_to_f32(HARD_BITS), normals])
    x = torch.from_numpy(inputs.copy())
    bf16 = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    fp16 = x.to(torch.float16).numpy().view(np.uint16)
    doc = {
        "torch": torch.__version__,
        "fp32_bits": [int(b) for b in inputs.view(np.uint32)],
        "bf16_bits": [int(b) for b in bf16],
        "fp16_bits": [int(b) for b in fp16],
    }
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    # Self-checks of the hand-computed cases, so a wrong torch build cannot silently become the reference.
    assert doc["bf16_bits"][1] == 0x3F80 and doc["bf16_bits"][2] == 0x3F82
    assert doc["bf16_bits"][3] == 0x3F81 and doc["bf16_bits"][4] == 0x3F80
    assert doc["fp16_bits"][6] == 0x3C00 and doc["fp16_bits"][7] == 0x3C02
    assert doc["fp16_bits"][8] == 0x7C00 and doc["fp16_bits"][9] == 0x7BFF
    print(f"wrote {OUT} ({len(inputs)} values)")


if __name__ == "__main__":
    main()
