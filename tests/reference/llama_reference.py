"""Plain-PyTorch reference for Llama-family decoders (model_type llama, mistral, qwen2) and PEFT LoRA.

Written to reproduce the semantics of Hugging Face transformers and PEFT, without depending on them:
  * transformers/models/llama/modeling_llama.py    (RMSNorm, rotary, GQA attention, SwiGLU MLP, LlamaForCausalLM)
  * transformers/models/mistral/modeling_mistral.py (no biases, explicit head_dim, sliding_window)
  * transformers/models/qwen2/modeling_qwen2.py     (bias on q/k/v only, not on o)
  * transformers/modeling_rope_utils.py             (default, linear and llama3 inverse frequencies)
  * transformers/loss/loss_utils.py ForCausalLMLoss (shift by one, mean over labels != -100)
  * peft/tuners/lora/layer.py Linear.forward        (base(x) + lora_B(lora_A(dropout(x))) * alpha / r)

The model is a set of functions over an HF-named state dict (no nn.Module), so the checkpoint names
are the only structure. Everything runs in one `compute_dtype` (float32 as HF does for a float32
checkpoint, or float64 for golden files); see tests/reference/README.md for the precision policy.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


# ----------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class DecoderConfig:
    """The architecture fields of an HF config.json, with HF's defaults filled in."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int  # absent/null in config.json -> num_attention_heads (plain multi-head attention)
    head_dim: int  # absent/null -> hidden_size // num_attention_heads (mistral and newer llama/qwen2 may set it)
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: Optional[dict]  # None, or {"rope_type" (or legacy "type"): "linear" | "llama3", ...}
    max_position_embeddings: int
    tie_word_embeddings: bool  # True -> no lm_head.weight; logits use model.embed_tokens.weight
    qkv_bias: bool  # llama: attention_bias; qwen2: always True; mistral: always False
    o_bias: bool  # llama: attention_bias; qwen2 and mistral: always False
    mlp_bias: bool  # llama: mlp_bias; qwen2 and mistral: always False
    sliding_window: Optional[int]  # None unless the model really uses it (see from_hf)

    @property
    def rope_type(self) -> str:
        if not self.rope_scaling:
            return "default"
        return self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))

    @staticmethod
    def from_hf(d: dict) -> "DecoderConfig":
        model_type = d["model_type"]
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {model_type!r}")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {d['hidden_act']!r}")
        heads = d["num_attention_heads"]
        attention_bias = bool(d.get("attention_bias", False))
        if model_type == "llama":
            qkv_bias, o_bias, mlp_bias = attention_bias, attention_bias, bool(d.get("mlp_bias", False))
        elif model_type == "qwen2":
            qkv_bias, o_bias, mlp_bias = True, False, False
        else:  # mistral
            qkv_bias, o_bias, mlp_bias = False, False, False
        # mistral applies sliding_window whenever it is not null; qwen2 only when use_sliding_window is true.
        if model_type == "mistral":
            sliding_window = d.get("sliding_window")
        elif model_type == "qwen2" and d.get("use_sliding_window", False):
            sliding_window = d.get("sliding_window")
        else:
            sliding_window = None
        return DecoderConfig(
            model_type=model_type,
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim") or d["hidden_size"] // heads,
            rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=float(d.get("rope_theta", 10000.0)),
            rope_scaling=d.get("rope_scaling"),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),  # False is the llama/mistral/qwen2 default
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=mlp_bias,
            sliding_window=sliding_window,
        )


def parameter_shapes(cfg: DecoderConfig) -> dict:
    """HF state-dict names and shapes, in the order HF's modules declare them."""
    H, I, V, D = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * D, cfg.num_key_value_heads * D
    shapes = {"model.embed_tokens.weight": (V, H)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        for name, (out_f, in_f), bias in (
            ("self_attn.q_proj", (q_out, H), cfg.qkv_bias),
            ("self_attn.k_proj", (kv_out, H), cfg.qkv_bias),
            ("self_attn.v_proj", (kv_out, H), cfg.qkv_bias),
            ("self_attn.o_proj", (H, q_out), cfg.o_bias),
            ("mlp.gate_proj", (I, H), cfg.mlp_bias),
            ("mlp.up_proj", (I, H), cfg.mlp_bias),
            ("mlp.down_proj", (H, I), cfg.mlp_bias),
        ):
            shapes[p + name + ".weight"] = (out_f, in_f)
            if bias:
                shapes[p + name + ".bias"] = (out_f,)
        shapes[p + "input_layernorm.weight"] = (H,)
        shapes[p + "post_attention_layernorm.weight"] = (H,)
    shapes["model.norm.weight"] = (H,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, H)
    return shapes


# ----------------------------------------------------------------------------------------------------
# Rotary position embedding


def rope_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
    """Inverse frequencies, float32 as in modeling_rope_utils.py (the llama3 branch comparisons included)."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))  # (dim/2,)
    kind = cfg.rope_type
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / cfg.rope_scaling["factor"]  # same as dividing the positions by factor
    if kind == "llama3":
        s = cfg.rope_scaling
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old_context = s["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths (low frequencies) are divided by factor, short ones are kept,
        # and the band in between is interpolated linearly in old_context / wavelen.
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    raise NotImplementedError(f"rope_type {kind!r}")


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype):
    """cos/sin for the given positions; (T, head_dim) each, halves duplicated as HF does."""
    freqs = positions.to(dtype)[:, None] * inv_freq.to(dtype)[None, :]  # (T, dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, dim)
    return emb.cos(), emb.sin()  # attention_scaling is 1.0 for default/linear/llama3


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Non-interleaved convention: (x1, x2) -> (-x2, x1) over the two halves of the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin  # x (B, nh, T, hd), cos/sin (T, hd) broadcast


# ----------------------------------------------------------------------------------------------------
# Building blocks


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: normalise in at least float32, cast back, then scale by weight."""
    dtype = x.dtype
    h = x.to(torch.promote_types(dtype, torch.float32))
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, T, hd) -> (B, nkv * n_rep, T, hd); query head h uses kv head h // n_rep."""
    B, nkv, T, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, nkv, n_rep, T, hd).reshape(B, nkv * n_rep, T, hd)


@dataclass(frozen=True)
class LoraAdapter:
    """PEFT LoRA weights for some linear layers: module path -> (A (r, in), B (out, r)); scaling = alpha / r."""

    weights: dict
    scaling: float

    @staticmethod
    def from_peft(state_dict: dict, adapter_config: dict) -> "LoraAdapter":
        """Read PEFT's on-disk names, e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight."""
        if adapter_config.get("use_rslora") or adapter_config.get("use_dora"):
            raise NotImplementedError("rsLoRA/DoRA")
        if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
            raise NotImplementedError("rank_pattern/alpha_pattern")
        prefix = "base_model.model."
        weights = {}
        for key in state_dict:
            if key.endswith(".lora_A.weight"):
                module = key[len(prefix):-len(".lora_A.weight")]
                weights[module] = (state_dict[key], state_dict[prefix + module + ".lora_B.weight"])
        return LoraAdapter(weights, adapter_config["lora_alpha"] / adapter_config["r"])

    def to_peft(self) -> dict:
        out = {}
        for module, (a, b) in self.weights.items():
            out[f"base_model.model.{module}.lora_A.weight"] = a
            out[f"base_model.model.{module}.lora_B.weight"] = b
        return out


# ----------------------------------------------------------------------------------------------------
# The model


class Decoder:
    """LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM forward over an HF state dict."""

    def __init__(self, cfg: DecoderConfig, state_dict: dict, compute_dtype=torch.float32,
                 lora: Optional[LoraAdapter] = None):
        expected = parameter_shapes(cfg)
        if set(state_dict) != set(expected):
            raise KeyError(f"state dict mismatch: missing {sorted(set(expected) - set(state_dict))}, "
                           f"unexpected {sorted(set(state_dict) - set(expected))}")
        for name, shape in expected.items():
            if tuple(state_dict[name].shape) != shape:
                raise ValueError(f"{name}: shape {tuple(state_dict[name].shape)} != {shape}")
        self.cfg = cfg
        self.dtype = compute_dtype
        # bf16/f16 checkpoints are upcast here, exactly (every bf16 value is representable in float32).
        self.w = {k: v.to(compute_dtype) for k, v in state_dict.items()}
        self.lm_head = self.w["model.embed_tokens.weight"] if cfg.tie_word_embeddings else self.w["lm_head.weight"]
        self.lora = None
        if lora is not None:
            self.lora = {m: (a.to(compute_dtype), b.to(compute_dtype)) for m, (a, b) in lora.weights.items()}
            self.lora_scaling = lora.scaling
            unknown = [m for m in self.lora if m + ".weight" not in self.w]
            if unknown:
                raise KeyError(f"LoRA targets not in the model: {unknown}")
        self.inv_freq = rope_inv_freq(cfg)  # float32, (head_dim/2,)

    def linear(self, module: str, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.w[module + ".weight"].T
        bias = self.w.get(module + ".bias")
        if bias is not None:
            y = y + bias
        if self.lora is not None and module in self.lora:
            a, b = self.lora[module]  # (r, in), (out, r); lora_dropout is identity at inference
            y = y + (x @ a.T) @ b.T * self.lora_scaling
        return y

    def attention(self, i: int, x: torch.Tensor, cos, sin, mask, cache):
        cfg = self.cfg
        B, T, _ = x.shape
        nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        p = f"model.layers.{i}.self_attn."
        q = self.linear(p + "q_proj", x).view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.linear(p + "k_proj", x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.linear(p + "v_proj", x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # cache holds rotated keys and values of earlier positions, before repeat_kv
            if cache[i] is not None:
                k = torch.cat((cache[i][0], k), dim=2)  # (B, nkv, S, hd), S = past + T
                v = torch.cat((cache[i][1], v), dim=2)
            cache[i] = (k, v)
        k, v = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)  # (B, nh, S, hd)
        scores = (q @ k.transpose(2, 3)) * hd ** -0.5  # (B, nh, T, S)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # HF eager adds finfo.min
        probs = F.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(q.dtype)
        y = (probs @ v).transpose(1, 2).reshape(B, T, nh * hd)  # (B, T, nh*hd)
        return self.linear(p + "o_proj", y)  # (B, T, H)

    def mlp(self, i: int, x: torch.Tensor) -> torch.Tensor:
        p = f"model.layers.{i}.mlp."
        return self.linear(p + "down_proj", F.silu(self.linear(p + "gate_proj", x)) * self.linear(p + "up_proj", x))

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                cache: Optional[list] = None, past_length: int = 0, return_hidden: bool = False):
        """Logits (B, T, V) for input_ids (B, T) at positions past_length .. past_length + T - 1.

        attention_mask (B, past_length + T): 1 = real token, 0 = padding (masked as a key).
        cache: list with one entry per layer (None at first) updated in place, or None to run without.
        """
        cfg = self.cfg
        B, T = input_ids.shape
        S = past_length + T
        if cfg.sliding_window is not None and S > cfg.sliding_window:
            raise NotImplementedError("sliding window attention shorter than the sequence")
        positions = torch.arange(past_length, S)  # HF: cache_position, also the position_ids by default
        cos, sin = rope_cos_sin(self.inv_freq, positions, self.dtype)  # (T, hd) each
        # mask[b, 0, t, s]: query at position past_length + t may see key s
        causal = torch.arange(S)[None, :] <= positions[:, None]  # (T, S)
        mask = causal[None, None, :, :].expand(B, 1, T, S)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]  # (B, 1, T, S)
        x = self.w["model.embed_tokens.weight"][input_ids]  # (B, T, H)
        for i in range(cfg.num_hidden_layers):
            p = f"model.layers.{i}."
            x = x + self.attention(i, rms_norm(x, self.w[p + "input_layernorm.weight"], cfg.rms_norm_eps),
                                   cos, sin, mask, cache)
            x = x + self.mlp(i, rms_norm(x, self.w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps))
        h = rms_norm(x, self.w["model.norm.weight"], cfg.rms_norm_eps)  # (B, T, H)
        logits = h @ self.lm_head.T  # (B, T, V)
        return (logits, h) if return_hidden else logits


# ----------------------------------------------------------------------------------------------------
# Loss and generation


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """HF ForCausalLMLoss without num_items_in_batch: position t predicts labels[t + 1];
    mean cross-entropy over the targets that are not ignore_index, computed in (at least) float32."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=ignore_index, reduction="mean")


def greedy_generate(model: Decoder, prompt: torch.Tensor, max_new_tokens: int, use_cache: bool = True):
    """Greedy decoding of exactly max_new_tokens tokens (no EOS stop) for prompt (1, P).

    Returns (new_tokens (1, N), step_logits (1, N, V), margins (N,)): step_logits[0, n] are the logits that
    chose new_tokens[0, n], and margins[n] is their top-1 minus top-2 gap (how robust the argmax is)."""
    tokens, margins, steps = prompt, [], []
    cache = [None] * model.cfg.num_hidden_layers if use_cache else None
    next_input, past = prompt, 0
    for _ in range(max_new_tokens):
        if use_cache:
            logits = model.forward(next_input, cache=cache, past_length=past)
            past += next_input.shape[1]
        else:
            logits = model.forward(tokens)
        last = logits[:, -1, :]  # (1, V)
        steps.append(last)
        top2 = last.topk(2, dim=-1).values
        margins.append(float(top2[0, 0] - top2[0, 1]))
        next_token = last.argmax(dim=-1, keepdim=True)  # (1, 1); ties -> lowest id
        tokens = torch.cat((tokens, next_token), dim=1)
        next_input = next_token
    return tokens[:, prompt.shape[1]:], torch.stack(steps, dim=1), torch.tensor(margins)
