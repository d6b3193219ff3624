"""Write the golden files under tests/FedLlm.Tests/Fixtures/golden/ that the C# parity tests compare against.

Usage (from the repository root; needs Debian's python3-torch, hence /usr/bin/python3):
    /usr/bin/python3 tests/reference/make_golden.py            # regenerate every case
    /usr/bin/python3 tests/reference/make_golden.py --check    # regenerate in memory, fail if any file differs

Each case is a tiny random checkpoint (config.json + model.safetensors) plus golden.safetensors with inputs
and the reference outputs. Outputs are computed in float64 from the stored weights and rounded to float32;
the float32 path (HF's own dtype path) is checked against them. See README.md for the semantics.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from llama_reference import (  # noqa: E402
    Decoder, DecoderConfig, LoraAdapter, apply_rope, causal_lm_loss, greedy_generate, parameter_shapes,
    rope_cos_sin, rope_inv_freq)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN_DIR = os.path.join(ROOT, "tests", "FedLlm.Tests", "Fixtures", "golden")

BATCH, SEQ_LEN, PAD_RIGHT = 2, 12, 3  # row 1 is right-padded by PAD_RIGHT tokens
PROMPT_LEN, NEW_TOKENS = 5, 8
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_ORDINARY_ID = 4  # ids 0..3 are pad/bos/eos/extra-eos; random text uses 4..V-1
UNLABELLED_PREFIX = 2  # labels are -100 on the first 2 prompt tokens of each row
MIN_GREEDY_MARGIN = 0.05  # top1 - top2 logit at every greedy step, so 1e-4 noise cannot flip a token
MIN_DISTINCT_GREEDY = 3  # not one repeated token (tied tiny models tend to repeat); greedy_logits also pin the steps

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def hf_config(model_type, *, vocab_size, hidden_size, intermediate_size, num_attention_heads,
              num_key_value_heads, rope_theta, tie_word_embeddings, torch_dtype="float32", num_hidden_layers=2,
              rms_norm_eps=1e-5, max_position_embeddings=256, eos_token_id=EOS_ID, **extra):
    """An HF-style config.json dict with the fields transformers writes for this model type."""
    cfg = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": eos_token_id,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "num_attention_heads": num_attention_heads,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_key_value_heads,
        "rms_norm_eps": rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tie_word_embeddings,
        "torch_dtype": torch_dtype,
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if model_type == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
    cfg.update(extra)
    return {k: v for k, v in cfg.items() if v is not OMIT}


OMIT = object()  # marks a field to leave out of config.json, to test the reader's default

# name -> (seed, config.json dict). Tiny: 2 layers, hidden 32-64, vocab 96-128.
CASES = {
    # Llama with grouped-query attention (2 query heads per kv head), separate lm_head.
    "llama_gqa": (1001, hf_config(
        "llama", vocab_size=128, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False)),
    # Llama 3.1-style rope scaling. original_max_position_embeddings = 64 with head_dim 16 and theta 5e5 puts
    # the 8 frequencies in all three llama3 bands: wavelength 6.3 < 64/4 (kept), 32.4 in [16, 64]
    # (interpolated), the other 6 > 64 (divided by 8). eos_token_id is a list, as in Llama 3 configs.
    "llama3_rope_scaling": (1002, hf_config(
        "llama", vocab_size=128, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=512,
        eos_token_id=[EOS_ID, 3], head_dim=16,
        rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 64, "rope_type": "llama3"})),
    # Qwen2: bias on q/k/v (never on o), GQA, tied. use_sliding_window false, so sliding_window is ignored.
    "qwen2_bias": (1003, hf_config(
        "qwen2", vocab_size=112, hidden_size=64, intermediate_size=160, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
        use_sliding_window=False, sliding_window=32768, max_window_layers=2)),
    # Mistral: explicit head_dim 16 != hidden 48 / 4 heads = 12, so q_proj is (64, 48) and o_proj (48, 64).
    # sliding_window null: no sliding-window attention.
    "mistral": (1004, hf_config(
        "mistral", vocab_size=120, hidden_size=48, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rope_theta=1000000.0, tie_word_embeddings=False,
        sliding_window=None)),
    # SmolLM-like: llama, 3 query heads per kv head, tied embeddings.
    "smollm_tied": (1005, hf_config(
        "llama", vocab_size=96, hidden_size=48, intermediate_size=128, num_attention_heads=6,
        num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=True)),
    # llama_gqa's weights and inputs, stored as bfloat16 (rounded to nearest even). The reference upcasts the
    # bf16 values to float (exactly), as the C# loader does; it does not compute in bfloat16.
    "llama_bf16": (1001, hf_config(
        "llama", vocab_size=128, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False, torch_dtype="bfloat16")),
    # Llama with attention_bias (q, k, v and o) and mlp_bias. num_key_value_heads is left out of config.json:
    # the reader must default it to num_attention_heads (plain multi-head attention).
    "llama_attention_bias": (1007, hf_config(
        "llama", vocab_size=96, hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_key_value_heads=OMIT, rope_theta=10000.0, tie_word_embeddings=False,
        attention_bias=True, mlp_bias=True)),
}

ADAPTER_CASE, ADAPTER_BASE, ADAPTER_SEED = "peft_lora", "llama_gqa", 2001
LORA_R, LORA_ALPHA = 4, 8
LORA_TARGETS = ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]


# ----------------------------------------------------------------------------------------------------
# Random checkpoint and inputs


def random_weights(cfg: DecoderConfig, seed: int) -> dict:
    """float32 weights, drawn in state-dict order from one generator. Scales keep activations near unit RMS
    and logits at a std of about 1-2, with norm weights around 1 and non-zero biases so that a missing
    norm weight or bias changes the output."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in parameter_shapes(cfg).items():
        noise = torch.randn(shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight"):
            out[name] = 1.0 + 0.1 * noise
        elif name.endswith(".bias"):
            out[name] = 0.1 * noise
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            out[name] = 0.25 * noise
        else:  # linear weight (out, in)
            out[name] = noise * (0.8 / shape[1] ** 0.5)
    return out


def random_inputs(cfg: DecoderConfig, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 500)
    ids = torch.randint(FIRST_ORDINARY_ID, cfg.vocab_size, (BATCH, SEQ_LEN), generator=g)
    ids[:, 0] = BOS_ID
    mask = torch.ones(BATCH, SEQ_LEN, dtype=torch.int64)
    mask[1, SEQ_LEN - PAD_RIGHT:] = 0
    ids[mask == 0] = PAD_ID
    labels = ids.clone()
    labels[:, :UNLABELLED_PREFIX] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def eos_ids(hf: dict) -> set:
    eos = hf.get("eos_token_id")
    return set(eos) if isinstance(eos, list) else {eos}


def pick_greedy_prompt(models, hf: dict, seed: int):
    """First random prompt whose greedy continuation has a clear argmax at every step, no special id
    (pad/bos/eos, so stopping at EOS or not gives the same tokens), at least
    MIN_DISTINCT_GREEDY different tokens, and the same tokens for every model given (float64/float32,
    cache/no cache)."""
    g = torch.Generator().manual_seed(seed + 900)
    cfg = models[0].cfg
    for _ in range(500):
        prompt = torch.randint(FIRST_ORDINARY_ID, cfg.vocab_size, (1, PROMPT_LEN), generator=g)
        prompt[0, 0] = BOS_ID
        results = [greedy_generate(m, prompt, NEW_TOKENS, use_cache=c) for m in models for c in (True, False)]
        tokens, step_logits, margins = results[0]
        if (all(torch.equal(t, tokens) for t, _, _ in results) and float(margins.min()) >= MIN_GREEDY_MARGIN
                and len(set(tokens[0].tolist())) >= MIN_DISTINCT_GREEDY
                and min(tokens[0].tolist()) >= FIRST_ORDINARY_ID and not eos_ids(hf) & set(tokens[0].tolist())):
            # cached and recomputed step logits agree (results[1] is the first model without cache)
            check((results[1][1] - step_logits).abs().max() < 1e-4, "greedy: cache != recompute logits")
            return prompt, tokens, step_logits, float(margins.min())
    raise RuntimeError(f"seed {seed}: no prompt with a robust greedy continuation")


# ----------------------------------------------------------------------------------------------------
# Sanity checks of the reference itself


def check(cond: bool, what: str):
    if not cond:
        raise AssertionError(what)


def sanity_checks(name: str, model: Decoder, inputs: dict, logits: torch.Tensor):
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    tol = 1e-10  # everything here runs in float64
    # Causality: changing token 8 leaves the logits of positions 0..7 unchanged, and changes position 8.
    changed = ids.clone()
    ordinary = model.cfg.vocab_size - FIRST_ORDINARY_ID
    changed[:, 8] = FIRST_ORDINARY_ID + (changed[:, 8] - FIRST_ORDINARY_ID + 1) % ordinary  # another ordinary id
    other = model.forward(changed, mask)
    check((other[:, :8] - logits[:, :8]).abs().max() < tol, f"{name}: causal mask leaks")
    check((other[0, 8] - logits[0, 8]).abs().max() > 1e-3, f"{name}: token 8 has no effect")
    # Padding: the ids under padding do not affect the real tokens, and the padded row matches the same
    # tokens run alone without padding.
    real = SEQ_LEN - PAD_RIGHT
    repadded = ids.clone()
    repadded[1, real:] = torch.tensor([5, 6, 7])
    other = model.forward(repadded, mask)
    check((other[1, :real] - logits[1, :real]).abs().max() < tol, f"{name}: padding leaks into real tokens")
    alone = model.forward(ids[1:, :real])
    check((alone[0] - logits[1, :real]).abs().max() < tol, f"{name}: padded row != unpadded row")
    # Without a mask the padding keys are visible again, so the mask matters for row 1 only.
    unmasked = model.forward(ids)
    check((unmasked[0] - logits[0]).abs().max() < tol, f"{name}: full row changed without mask")
    # KV cache: prefill 7 tokens then feed the rest one by one, compare with the full forward pass.
    cache, row = [None] * model.cfg.num_hidden_layers, ids[:1]
    parts = [model.forward(row[:, :7], cache=cache, past_length=0)]
    for t in range(7, SEQ_LEN):
        parts.append(model.forward(row[:, t:t + 1], cache=cache, past_length=t))
    check((torch.cat(parts, dim=1)[0] - logits[0]).abs().max() < 1e-9, f"{name}: KV cache != full forward")


def reference_self_checks():
    """Check the reference's building blocks against independent formulations."""
    # 1. rotate_half rotary == Meta's original interleaved complex form, once q is in HF's row order.
    #    HF's convert_llama_weights_to_hf permutes q/k rows so that Meta's pair (2j, 2j+1) lands at (j, j + hd/2).
    hd, T = 16, 12
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    q_meta = torch.randn(2, 3, T, hd, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq.double()[None, :]  # (T, hd/2)
    rotated = torch.view_as_real(torch.view_as_complex(q_meta.reshape(2, 3, T, hd // 2, 2))
                                 * torch.polar(torch.ones_like(angles), angles)).reshape(2, 3, T, hd)
    to_hf = torch.cat((torch.arange(0, hd, 2), torch.arange(1, hd, 2)))  # HF index -> Meta index
    cos, sin = rope_cos_sin(inv_freq, torch.arange(T), torch.float64)
    check((apply_rope(q_meta[..., to_hf], cos, sin) - rotated[..., to_hf]).abs().max() < 1e-12,
          "rotary != Meta complex form")
    # 2. llama3 inverse frequencies == Meta's llama3 apply_scaling (scalar float64 loop).
    cfg = DecoderConfig.from_hf(CASES["llama3_rope_scaling"][1])
    s = cfg.rope_scaling
    expected = []
    for freq in (1.0 / cfg.rope_theta ** (2 * j / cfg.head_dim) for j in range(cfg.head_dim // 2)):
        wavelen = 2 * math.pi / freq
        if wavelen < s["original_max_position_embeddings"] / s["high_freq_factor"]:
            expected.append(freq)
        elif wavelen > s["original_max_position_embeddings"] / s["low_freq_factor"]:
            expected.append(freq / s["factor"])
        else:
            smooth = ((s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"])
                      / (s["high_freq_factor"] - s["low_freq_factor"]))
            expected.append((1 - smooth) * freq / s["factor"] + smooth * freq)
    rel = (rope_inv_freq(cfg).double() / torch.tensor(expected, dtype=torch.float64) - 1).abs().max()
    check(rel < 1e-6, f"llama3 inv_freq != Meta apply_scaling (rel {rel})")
    # 3. Loss == explicit average of -log p(next label) over labelled targets.
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 6, 10, generator=g, dtype=torch.float64)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, -100, 7, 8, -100, -100]])
    terms = [-torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]]
             for b in range(2) for t in range(1, 6) if labels[b, t] != -100]
    check(abs(float(causal_lm_loss(logits, labels)) - float(sum(terms) / len(terms))) < 1e-12, "loss formula")


def gqa_equals_expanded_mha(name: str, model: Decoder, weights: dict, inputs: dict, logits: torch.Tensor):
    """repeat_kv convention check: query head h uses kv head h // n_rep. Duplicating each kv head's rows
    n_rep times in k_proj/v_proj and running as plain multi-head attention must give the same logits."""
    cfg = model.cfg
    n_rep = cfg.num_attention_heads // cfg.num_key_value_heads
    if n_rep == 1:
        return
    expanded = dict(weights)
    for key, w in weights.items():
        if ".k_proj." in key or ".v_proj." in key:
            per_head = w.reshape(cfg.num_key_value_heads, cfg.head_dim, *w.shape[1:])
            expanded[key] = per_head.repeat_interleave(n_rep, dim=0).reshape(-1, *w.shape[1:])
    mha_cfg = DecoderConfig(**{**cfg.__dict__, "num_key_value_heads": cfg.num_attention_heads})
    other = Decoder(mha_cfg, expanded, torch.float64).forward(inputs["input_ids"], inputs["attention_mask"])
    check((other - logits).abs().max() < 1e-10, f"{name}: GQA != expanded MHA")


# ----------------------------------------------------------------------------------------------------
# Writing


def json_text(obj, trailing_newline: bool) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + ("\n" if trailing_newline else "")).encode("utf-8")


def run_case(name: str, seed: int, hf: dict, files: dict, report: list):
    cfg = DecoderConfig.from_hf(hf)
    weights32 = random_weights(cfg, seed)
    stored = {k: v.to(torch.bfloat16) for k, v in weights32.items()} if hf["torch_dtype"] == "bfloat16" else weights32
    # The reference uses exactly what the file holds (bf16 upcast), so the golden matches a loader that upcasts.
    model64 = Decoder(cfg, stored, torch.float64)
    model32 = Decoder(cfg, stored, torch.float32)
    inputs = random_inputs(cfg, seed)
    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    logits = model64.forward(ids, mask)
    loss = causal_lm_loss(logits, labels)

    sanity_checks(name, model64, inputs, logits)
    gqa_equals_expanded_mha(name, model64, stored, inputs, logits)
    f32_error = float((model32.forward(ids, mask).double() - logits).abs().max())
    check(f32_error < 2e-5, f"{name}: float32 path differs from float64 by {f32_error}")
    if cfg.rope_type == "llama3":
        default = rope_inv_freq(DecoderConfig(**{**cfg.__dict__, "rope_scaling": None}))
        ratio = rope_inv_freq(cfg) / default  # 1 = kept, 1/factor = divided, in between = interpolated
        factor = cfg.rope_scaling["factor"]
        check(bool((ratio == 1).any() and (ratio == 1 / factor).any()
                   and ((ratio < 1) & (ratio > 1 / factor)).any()), f"{name}: not all three llama3 bands used")
    if cfg.rope_type != "default":
        plain = DecoderConfig(**{**cfg.__dict__, "rope_scaling": None})
        unscaled = Decoder(plain, stored, torch.float64).forward(ids, mask)
        check((unscaled - logits).abs().max() > 1e-2, f"{name}: rope scaling does not change the logits")
    prompt, tokens, step_logits, margin = pick_greedy_prompt([model64, model32], hf, seed)

    files[f"{name}/config.json"] = json_text(hf, trailing_newline=True)
    files[f"{name}/model.safetensors"] = safetensors_io.serialize(stored, {"format": "pt"})
    golden = {
        **inputs,
        "logits": logits.float(),
        "loss": loss.float().reshape(1),
        "greedy_prompt": prompt,
        "greedy_tokens": tokens,
        "greedy_logits": step_logits.float(),
        "inv_freq": rope_inv_freq(cfg),
    }
    files[f"{name}/golden.safetensors"] = safetensors_io.serialize(golden, golden_metadata(name, margin))
    report.append(f"{name:22s} loss {loss.item():.5f}  logits std {logits.std().item():.2f}  "
                  f"f32-f64 {f32_error:.1e}  greedy {tokens[0].tolist()} (min margin {margin:.3f})")
    return cfg, stored, inputs, logits, loss


def golden_metadata(case: str, margin: float) -> dict:
    return {
        "format": "pt",
        "generator": "tests/reference/make_golden.py",
        "case": case,
        "compute_dtype": "float64, rounded to float32",
        "padding_side": "right",
        "pad_token_id": str(PAD_ID),
        "greedy_min_margin": f"{margin:.4f}",
    }


def run_adapter_case(base_cfg, base_weights, inputs, base_logits, files: dict, report: list):
    g = torch.Generator().manual_seed(ADAPTER_SEED)
    lora = {}
    for name, shape in parameter_shapes(base_cfg).items():
        module = name[:-len(".weight")]
        if name.endswith(".weight") and module.rsplit(".", 1)[-1] in LORA_TARGETS:
            out_f, in_f = shape
            a = torch.randn(LORA_R, in_f, generator=g) * (1.0 / in_f ** 0.5)  # (r, in)
            b = torch.randn(out_f, LORA_R, generator=g) * 0.1  # (out, r): non-zero, unlike PEFT's init
            lora[module] = (a, b)
    config = {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": f"../{ADAPTER_BASE}",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": LORA_ALPHA,
        "lora_dropout": 0.0,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": LORA_R,
        "rank_pattern": {},
        "revision": None,
        "target_modules": sorted(LORA_TARGETS),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }
    adapter = LoraAdapter(lora, LORA_ALPHA / LORA_R)
    on_disk = adapter.to_peft()
    check(LoraAdapter.from_peft(on_disk, config).weights.keys() == lora.keys(), "adapter key round trip")
    model64 = Decoder(base_cfg, base_weights, torch.float64, lora=adapter)
    model32 = Decoder(base_cfg, base_weights, torch.float32, lora=adapter)
    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    logits = model64.forward(ids, mask)
    loss = causal_lm_loss(logits, labels)
    check((logits - base_logits).abs().max() > 1e-2, "adapter does not change the logits")
    f32_error = float((model32.forward(ids, mask).double() - logits).abs().max())
    check(f32_error < 2e-5, f"adapter: float32 path differs from float64 by {f32_error}")
    # Merging W' = W + scaling * B @ A into the base weights must give the same logits (PEFT get_delta_weight).
    merged = {k: v.double() for k, v in base_weights.items()}
    for module, (a, b) in lora.items():
        merged[module + ".weight"] = merged[module + ".weight"] + adapter.scaling * (b.double() @ a.double())
    merged_logits = Decoder(base_cfg, merged, torch.float64).forward(ids, mask)
    check((merged_logits - logits).abs().max() < 1e-10, "merged adapter != unmerged adapter")
    sanity_checks(ADAPTER_CASE, model64, inputs, logits)
    prompt, tokens, step_logits, margin = pick_greedy_prompt([model64, model32], CASES[ADAPTER_BASE][1], ADAPTER_SEED)

    files[f"{ADAPTER_CASE}/adapter_config.json"] = json_text(config, trailing_newline=False)  # PEFT writes none
    files[f"{ADAPTER_CASE}/adapter_model.safetensors"] = safetensors_io.serialize(on_disk, {"format": "pt"})
    golden = {
        **inputs,
        "logits": logits.float(),
        "loss": loss.float().reshape(1),
        "greedy_prompt": prompt,
        "greedy_tokens": tokens,
        "greedy_logits": step_logits.float(),
    }
    meta = golden_metadata(ADAPTER_CASE, margin)
    meta["base_case"] = ADAPTER_BASE
    files[f"{ADAPTER_CASE}/golden_with_adapter.safetensors"] = safetensors_io.serialize(golden, meta)
    report.append(f"{ADAPTER_CASE:22s} loss {loss.item():.5f}  logits std {logits.std().item():.2f}  "
                  f"f32-f64 {f32_error:.1e}  greedy {tokens[0].tolist()} (min margin {margin:.3f})")


def generate_all():
    """Return ({relative path: bytes}, report lines)."""
    torch.set_num_threads(1)  # one fixed reduction order, so the bytes do not depend on the machine's cores
    files, report, by_name = {}, [], {}
    reference_self_checks()
    for name, (seed, hf) in CASES.items():
        by_name[name] = run_case(name, seed, hf, files, report)
    base_cfg, base_weights, inputs, logits, _ = by_name[ADAPTER_BASE]
    run_adapter_case(base_cfg, base_weights, inputs, logits, files, report)
    # Every written safetensors file must read back to the same tensors.
    for path, blob in files.items():
        if path.endswith(".safetensors"):
            tensors, _ = safetensors_io.deserialize(blob)
            check(safetensors_io.serialize(tensors, safetensors_io.deserialize(blob)[1]) == blob,
                  f"{path}: safetensors round trip")
    return files, report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = parser.parse_args()
    files, report = generate_all()
    print("\n".join(report))
    if args.check:
        stale = []
        for path, blob in sorted(files.items()):
            full = os.path.join(GOLDEN_DIR, path)
            if not os.path.exists(full) or open(full, "rb").read() != blob:
                stale.append(path)
        if stale:
            sys.exit("golden files differ from the generator: " + ", ".join(stale))
        print(f"all {len(files)} golden files are up to date")
        return
    for path, blob in sorted(files.items()):
        full = os.path.join(GOLDEN_DIR, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(blob)
        print(f"{hashlib.sha256(blob).hexdigest()[:16]}  {len(blob):7d}  {path}")


if __name__ == "__main__":
    main()
