"""Write tests/FedLlm.Tests/Fixtures/golden/dpo/dpo_golden.safetensors: DPO log-probabilities, loss and LoRA gradients.

Usage (from the repository root; needs Debian's python3-torch, hence /usr/bin/python3):
    /usr/bin/python3 tests/reference/dpo/make_dpo_golden.py          # write the golden file
    /usr/bin/python3 tests/reference/dpo/make_dpo_golden.py --check  # regenerate in memory, exit 1 if the file differs

Policy = the llama_gqa checkpoint with the peft_lora adapter applied; reference = the same checkpoint without it
(TRL's choice for a PEFT policy: the adapter switched off). For a few fixed token-id preference pairs the script computes
    log pi(y|x) = sum over response tokens t of log softmax(logits at t-1)[y_t]          (each sequence run ALONE, unpadded)
    loss        = mean_i -log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l)))         (Rafailov et al. 2023, beta 0.1)
and the gradients of the loss w.r.t. every lora_A / lora_B tensor, all in float64 (rounded to nothing: stored as F64).
The C# side batches chosen and rejected of all pairs together with right padding, so running each sequence alone here
also checks that padding does not leak into the log-probabilities.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import safetensors_io  # noqa: E402
from llama_reference import Decoder, DecoderConfig, LoraAdapter  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "FedLlm.Tests", "Fixtures", "golden")
OUT = os.path.join(GOLDEN, "dpo", "dpo_golden.safetensors")

BETA = 0.1
BOS_ID, EOS_ID = 1, 2
SEED = 3001
# (prompt length incl. BOS, chosen length incl. EOS, rejected length incl. EOS): unequal on purpose, so that rows are
# padded differently and a pair's chosen and rejected sequences have different lengths.
SHAPES = [(5, 6, 4), (3, 3, 8), (7, 5, 5)]


def check(cond, what):
    if not cond:
        sys.exit(f"self-check failed: {what}")


def make_pairs(vocab):
    g = torch.Generator().manual_seed(SEED)

    def ids(n):
        return torch.randint(4, vocab, (n,), generator=g).tolist()  # ordinary ids only (0..3 are special)

    pairs = []
    for p, c, r in SHAPES:
        pairs.append(([BOS_ID] + ids(p - 1), ids(c - 1) + [EOS_ID], ids(r - 1) + [EOS_ID]))
    return pairs


def sequence_logp(model, prompt, response):
    """Sum of log pi(response_t | prompt, response_<t) with the sequence run alone."""
    ids = torch.tensor([prompt + response])  # (1, T)
    logits = model.forward(ids)[0]  # (T, V)
    logp = F.log_softmax(logits[:-1].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (T-1, V)
    targets = ids[0, 1:]  # position t predicts token t+1
    token_logp = logp.gather(1, targets[:, None])[:, 0]  # (T-1,)
    return token_logp[len(prompt) - 1:].sum()  # only the response tokens


def dpo_loss(pc, pr, rc, rr, beta):
    return (-F.logsigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


def compute(cfg, weights, adapter_cfg, adapter_disk, pairs, dtype):
    lora = LoraAdapter.from_peft({k: v.to(dtype).clone().requires_grad_(True) for k, v in adapter_disk.items()}, adapter_cfg)
    leaves = {}
    for module, (a, b) in lora.weights.items():
        leaves[f"base_model.model.{module}.lora_A.weight"] = a
        leaves[f"base_model.model.{module}.lora_B.weight"] = b
    policy = Decoder(cfg, weights, dtype, lora=lora)
    reference = Decoder(cfg, weights, dtype)
    pc = torch.stack([sequence_logp(policy, p, c) for p, c, _ in pairs])
    pr = torch.stack([sequence_logp(policy, p, r) for p, _, r in pairs])
    with torch.no_grad():
        rc = torch.stack([sequence_logp(reference, p, c) for p, c, _ in pairs])
        rr = torch.stack([sequence_logp(reference, p, r) for p, _, r in pairs])
    loss = dpo_loss(pc, pr, rc, rr, BETA)
    names = sorted(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])
    return dict(pc=pc.detach(), pr=pr.detach(), rc=rc, rr=rr, loss=loss.detach(),
                grads={n: g for n, g in zip(names, grads)}, leaves=leaves, policy=policy, reference=reference)


def generate():
    torch.set_num_threads(1)  # one reduction order, so the bytes do not depend on the machine
    cfg_json = json.load(open(os.path.join(GOLDEN, "llama_gqa", "config.json")))
    cfg = DecoderConfig.from_hf(cfg_json)
    weights, _ = safetensors_io.deserialize(open(os.path.join(GOLDEN, "llama_gqa", "model.safetensors"), "rb").read())
    adapter_cfg = json.load(open(os.path.join(GOLDEN, "peft_lora", "adapter_config.json")))
    adapter_disk, _ = safetensors_io.deserialize(open(os.path.join(GOLDEN, "peft_lora", "adapter_model.safetensors"), "rb").read())
    pairs = make_pairs(cfg_json["vocab_size"])

    r64 = compute(cfg, weights, adapter_cfg, adapter_disk, pairs, torch.float64)
    r32 = compute(cfg, weights, adapter_cfg, adapter_disk, pairs, torch.float32)

    # Self-checks (each guards a way the golden numbers could be uninformative or wrong).
    check(float((r64["pc"] - r64["rc"]).abs().min()) > 0.05, "adapter barely changes the chosen log-probs")
    margins = (r64["pc"] - r64["rc"]) - (r64["pr"] - r64["rr"])
    check(float(margins.abs().min()) > 0.1, "a pair's DPO logit is near zero, the loss would not test its sign")
    explicit = sum(float(torch.log1p(torch.exp(-BETA * m))) for m in margins) / len(pairs)
    check(abs(explicit - float(r64["loss"])) < 1e-12, "loss != mean softplus(-beta * margin)")
    gmax = max(float(g.abs().max()) for g in r64["grads"].values())
    check(gmax > 1e-2, f"largest gradient {gmax} is too small for a 1e-4 tolerance to mean anything")
    check(all(float(g.abs().max()) > 1e-6 for g in r64["grads"].values()), "an adapter tensor gets no gradient")
    f32 = max(float((r32["grads"][n].double() - g).abs().max()) for n, g in r64["grads"].items())
    check(f32 < 1e-5, f"float32 gradients differ from float64 by {f32}")
    check(abs(float(r32["loss"]) - float(r64["loss"])) < 1e-6, "float32 loss differs from float64")
    # Finite differences on a few gradient entries (float64), so autograd through the reference is itself checked.
    for name in sorted(r64["grads"])[:4]:
        leaf = r64["leaves"][name]
        idx = tuple(int(i) for i in (r64["grads"][name].abs() == r64["grads"][name].abs().max()).nonzero()[0])
        eps = 1e-6
        with torch.no_grad():
            base = leaf[idx].item()
            leaf[idx] = base + eps
            up = dpo_loss(*(torch.stack([sequence_logp(r64["policy"], p, s) for p, *rest in pairs for s in [rest[k]]])
                            for k in (0, 1)), r64["rc"], r64["rr"], BETA)
            leaf[idx] = base - eps
            down = dpo_loss(*(torch.stack([sequence_logp(r64["policy"], p, s) for p, *rest in pairs for s in [rest[k]]])
                              for k in (0, 1)), r64["rc"], r64["rr"], BETA)
            leaf[idx] = base
        fd = (float(up) - float(down)) / (2 * eps)
        check(abs(fd - float(r64["grads"][name][idx])) < 1e-7, f"{name}{idx}: finite difference {fd} != autograd")
    # Padding must not change a sequence's log-probability: right-pad one sequence and compare.
    p, c, _ = pairs[1]
    padded = torch.tensor([p + c + [0, 0, 0]])
    logp = F.log_softmax(r64["policy"].forward(padded)[0, :-1], -1).gather(1, padded[0, 1:, None])[:, 0]
    check(abs(float(logp[len(p) - 1:len(p) + len(c) - 1].sum() - r64["pc"][1])) < 1e-10, "right padding changes a log-prob")

    tensors = {}
    for i, (p, c, r) in enumerate(pairs):
        tensors[f"pair{i}.prompt"] = torch.tensor(p, dtype=torch.int64)
        tensors[f"pair{i}.chosen"] = torch.tensor(c, dtype=torch.int64)
        tensors[f"pair{i}.rejected"] = torch.tensor(r, dtype=torch.int64)
    tensors["policy_chosen_logps"] = r64["pc"]
    tensors["policy_rejected_logps"] = r64["pr"]
    tensors["reference_chosen_logps"] = r64["rc"]
    tensors["reference_rejected_logps"] = r64["rr"]
    tensors["loss"] = r64["loss"].reshape(1)
    for name, g in r64["grads"].items():
        tensors["grad." + name] = g
    meta = {"beta": str(BETA), "pairs": str(len(pairs)), "base_case": "llama_gqa", "adapter_case": "peft_lora",
            "reference": "base model (adapter off)", "max_abs_grad": f"{gmax:.4f}", "f32_grad_error": f"{f32:.1e}"}
    report = (f"dpo: loss {float(r64['loss']):.6f}  margins {[round(float(m), 4) for m in margins]}  "
              f"max |grad| {gmax:.4f}  f32-f64 grad {f32:.1e}")
    return safetensors_io.serialize(tensors, meta), report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the file on disk, write nothing")
    args = parser.parse_args()
    blob, report = generate()
    print(report)
    if args.check:
        if not os.path.exists(OUT) or open(OUT, "rb").read() != blob:
            sys.exit(f"{OUT} differs from the generator")
        print("dpo golden file is up to date")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(blob)
    print(f"wrote {OUT} ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
