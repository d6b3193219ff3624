"""Golden quantise -> dequantise results for FedLlm's int8 and NF4 base layers, in plain PyTorch.

Usage (from the repository root; needs Debian's python3-torch, hence /usr/bin/python3):
    /usr/bin/python3 tests/reference/quant/make_quant_golden.py           # write the golden file
    /usr/bin/python3 tests/reference/quant/make_quant_golden.py --check   # fail if the committed file differs

Written from the definitions, not from FedLlm's code:
  * int8 (LLM.int8(), Dettmers et al. 2022, vector-wise): per output row scale = absmax / 127 (1 for an all-zero row),
    code = round-half-even(w / scale) clamped to +-127, w' = code * scale. All in float32.
  * NF4 (QLoRA, Dettmers et al. 2023): flatten row-major, blocks of 64 (last zero-padded), absmax per block,
    index = number of level midpoints strictly below w / absmax (so a value on a midpoint goes to the lower level,
    as bitsandbytes' dQuantizeNF4 decision tree), two indices per byte, the first in the high nibble,
    w' = level[index] * absmax.
  * Double quantisation (QLoRA sec. 3, bitsandbytes compress_statistics): c = absmax - mean(absmax) (mean in float64,
    rounded to float32), blocks of 256, 8-bit index into the signed dynamic map of bitsandbytes
    (create_dynamic_map: for i in 0..6, midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i-6), both signs, plus 0 and 1;
    here in float64 and rounded to float32 once), nearest by the same midpoint rule; absmax' = map[code] * absmax2 + mean.
Output: tests/FedLlm.Tests/Fixtures/golden/quant/golden.safetensors
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import safetensors_io  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(ROOT, "tests", "FedLlm.Tests", "Fixtures", "golden", "quant", "golden.safetensors")

NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=torch.float32)


def dynamic_map():
    data = []
    for i in range(7):
        items = 2 ** i + 1
        scale = 1.0 / 10 ** (6 - i)
        for k in range(items - 1):
            lower = 0.1 + (1.0 - 0.1) * k / (items - 1)
            upper = 0.1 + (1.0 - 0.1) * (k + 1) / (items - 1)
            mean = (lower + upper) / 2.0
            data += [scale * mean, -(scale * mean)]
    data += [0.0, 1.0]
    assert len(data) == 256
    return torch.tensor(sorted(data), dtype=torch.float64).to(torch.float32)


DYNAMIC_MAP = dynamic_map()


def int8_quantize(w):
    w = w.to(torch.float32)
    absmax = w.abs().amax(dim=1, keepdim=True)
    scales = torch.where(absmax == 0, torch.ones_like(absmax), absmax / 127.0)
    codes = torch.round(w / scales).clamp(-127, 127).to(torch.int8)
    return codes, scales, codes.to(torch.float32) * scales


def nearest(normalized, levels):
    midpoints = (levels[:-1] + levels[1:]) / 2.0
    return (normalized.unsqueeze(-1) > midpoints).sum(-1)  # count of midpoints strictly below


def blocked(flat, size):
    pad = (-flat.numel()) % size
    return torch.cat([flat, flat.new_zeros(pad)]).view(-1, size)


def blockwise(flat, size, levels):
    blocks = blocked(flat, size)
    absmax = blocks.abs().amax(dim=1)
    safe = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    return nearest(blocks / safe.unsqueeze(1), levels), absmax


def nf4_quantize(w, double_quant):
    n = w.numel()
    idx, absmax = blockwise(w.to(torch.float32).reshape(-1), 64, NF4_LEVELS)
    pairs = idx.reshape(-1, 2)
    packed = (pairs[:, 0] * 16 + pairs[:, 1]).to(torch.uint8)
    out = {"packed": packed}
    if double_quant:
        offset = absmax.double().mean().float()
        codes, absmax2 = blockwise(absmax - offset, 256, DYNAMIC_MAP)
        absmax_dq = (DYNAMIC_MAP[codes] * absmax2.unsqueeze(1)).reshape(-1)[:absmax.numel()] + offset
        out.update(absmax_codes=codes.reshape(-1)[:absmax.numel()].to(torch.uint8), absmax_scales=absmax2,
                   absmax_offset=offset, absmax_dequantized=absmax_dq)
        scale = absmax_dq
    else:
        out["absmax"] = absmax
        scale = absmax
    out["dequantized"] = (NF4_LEVELS[idx] * scale.unsqueeze(1)).reshape(-1)[:n].view(w.shape)
    return out


def cases():
    g = torch.Generator().manual_seed(9)
    tensors = {"dynamic_map": DYNAMIC_MAP}

    # int8: normal rows, an all-zero row, a row whose absmax is 127 (scale exactly 1) holding .5 ties, which
    # round-half-even sends to 2, -4, 0, and a row of one large outlier.
    w = torch.randn(6, 70, generator=g) * 0.05
    w[2] = 0
    w[3] = 0.0
    w[3, :5] = torch.tensor([127.0, 2.5, -3.5, 0.5, -126.5])
    w[4, 7] = 3.0
    tensors["int8_f32.weight"] = w
    codes, scales, deq = int8_quantize(w)
    tensors.update({"int8_f32.codes": codes, "int8_f32.scales": scales, "int8_f32.dequantized": deq})
    wb = (torch.randn(5, 40, generator=g) * 0.1).to(torch.bfloat16)
    tensors["int8_bf16.weight"] = wb
    codes, scales, deq = int8_quantize(wb)
    tensors.update({"int8_bf16.codes": codes, "int8_bf16.scales": scales, "int8_bf16.dequantized": deq})

    # NF4, single-level scales: 5 x 100 = 500 values (7 full blocks + a padded one); block 1 holds the exact float32
    # midpoints between levels (absmax 1), which must go to the lower level; block 2 is all zero.
    w = torch.randn(5, 100, generator=g) * 0.02
    flat = w.view(-1)
    mids = (NF4_LEVELS[:-1] + NF4_LEVELS[1:]) / 2.0
    flat[64:128] = 0.0
    flat[64] = 1.0
    flat[65:65 + 15] = mids
    flat[80:80 + 15] = -mids
    flat[128:192] = 0.0
    tensors["nf4.weight"] = w
    for key, value in nf4_quantize(w, double_quant=False).items():
        tensors["nf4." + key] = value

    # NF4 with double quantisation: 130 x 256 values = 520 blocks, so 3 scale blocks (256, 256, 8); rows of very
    # different magnitude so that the scales spread widely around their mean.
    w = torch.randn(130, 256, generator=g) * torch.logspace(-3, 0, 130).unsqueeze(1)
    w = w.to(torch.bfloat16)
    tensors["nf4_dq.weight"] = w
    for key, value in nf4_quantize(w, double_quant=True).items():
        tensors["nf4_dq." + key] = value
    return {k: v.contiguous() for k, v in tensors.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    blob = safetensors_io.serialize(cases(), {"format": "pt"})
    if args.check:
        with open(OUT, "rb") as f:
            if f.read() != blob:
                sys.exit(f"{OUT} differs from a fresh run")
        print("quant golden file up to date")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(blob)
    print(f"wrote {OUT} ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
