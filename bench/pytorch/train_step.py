#!/usr/bin/python3
"""One LoRA training step of a SmolLM-135M-shaped Llama in plain PyTorch: the baseline FedLlm.Bench compares against.

Written for Debian's python3-torch (1.13, no scaled_dot_product_attention), with the semantics of the libraries a
Python user would reach for:
  - decoder          transformers 4.31 modeling_llama.py, eager path: RMSNorm statistics in fp32, rotary cos/sin tables
                     cached to max_position_embeddings and gathered by position_ids, repeat_kv (expand + reshape),
                     additive float causal mask built from an all-ones attention mask, softmax in fp32,
                     SwiGLU MLP, tied lm_head
  - adapters         PEFT lora.Linear: frozen base Linear, result += lora_B(lora_A(dropout(x))) * alpha / r,
                     A kaiming-uniform (bound 1/sqrt(in)), B zero, on q k v o gate up down
  - loss             transformers' LlamaForCausalLM: full logits, .float(), shift by one, CrossEntropyLoss (mean)
  - optimizer step   clip_grad_norm_(1.0) over the adapters, torch.optim.AdamW (lr 5e-5, wd 0), zero_grad
Labels are the input ids themselves (every token labelled, none -100), so the loss covers B*(T-1) positions; tokens/s
counts B*T tokens per step. Prints one JSON line on stdout; progress goes to stderr.
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# SmolLM-135M's config.json (HuggingFaceTB/SmolLM-135M).
VOCAB, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 49152, 576, 1536, 30, 9, 3
HEAD_DIM = HIDDEN // HEADS
RMS_EPS, ROPE_THETA, MAX_POSITIONS = 1e-5, 10000.0, 2048
LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)  # (B, T, 1)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


class Rotary(nn.Module):
    """cos/sin tables (1, 1, max_positions, d) computed once, as LlamaRotaryEmbedding caches them."""

    def __init__(self):
        super().__init__()
        inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))  # (d/2)
        t = torch.arange(MAX_POSITIONS, dtype=inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, inv_freq)  # (P, d/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (P, d)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :], persistent=False)
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :], persistent=False)

    def forward(self, seq_len):
        return self.cos_cached[:, :, :seq_len], self.sin_cached[:, :, :seq_len]


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q, k, cos, sin, position_ids):
    cos = cos.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)  # (B, 1, T, d)
    sin = sin.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(x, n_rep):
    b, kv, s, d = x.shape
    if n_rep == 1:
        return x
    x = x[:, :, None, :, :].expand(b, kv, n_rep, s, d)  # (B, kv, r, S, d)
    return x.reshape(b, kv * n_rep, s, d)  # (B, h, S, d)


class LoraLinear(nn.Module):
    """PEFT's lora.Linear forward on a frozen base nn.Linear."""

    def __init__(self, base: nn.Linear, dropout: float):
        super().__init__()
        self.base_layer = base
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # PEFT's choice for 0
        self.lora_A = nn.Linear(base.in_features, LORA_R, bias=False)
        self.lora_B = nn.Linear(LORA_R, base.out_features, bias=False)
        self.scaling = LORA_ALPHA / LORA_R
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        result = self.base_layer(x)
        x = x.to(self.lora_A.weight.dtype)
        result += self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.rotary_emb = Rotary()

    def forward(self, x, mask, position_ids):
        b, t, _ = x.size()
        q = self.q_proj(x).view(b, t, HEADS, HEAD_DIM).transpose(1, 2)  # (B, h, T, d)
        k = self.k_proj(x).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)  # (B, kv, T, d)
        v = self.v_proj(x).view(b, t, KV_HEADS, HEAD_DIM).transpose(1, 2)  # (B, kv, T, d)
        cos, sin = self.rotary_emb(t)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # transformers 4.31 casts the cached tables to x's dtype
        q, k = apply_rotary(q, k, cos, sin, position_ids)
        k = repeat_kv(k, HEADS // KV_HEADS)  # (B, h, T, d)
        v = repeat_kv(v, HEADS // KV_HEADS)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM)  # (B, h, T, T)
        scores = scores + mask
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, v)  # (B, h, T, d)
        out = out.transpose(1, 2).contiguous().reshape(b, t, HIDDEN)  # (B, T, H)
        return self.o_proj(out)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, FFN, bias=False)
        self.up_proj = nn.Linear(HIDDEN, FFN, bias=False)
        self.down_proj = nn.Linear(FFN, HIDDEN, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = Attention()
        self.mlp = Mlp()
        self.input_layernorm = RMSNorm(HIDDEN, RMS_EPS)
        self.post_attention_layernorm = RMSNorm(HIDDEN, RMS_EPS)

    def forward(self, x, mask, position_ids):
        h = x + self.self_attn(self.input_layernorm(x), mask, position_ids)
        return h + self.mlp(self.post_attention_layernorm(h))


def causal_mask(b, t, dtype):
    """transformers 4.31 _prepare_decoder_attention_mask for an all-ones attention_mask: (B, 1, T, T) additive."""
    causal = torch.full((t, t), torch.finfo(dtype).min)
    cond = torch.arange(t)
    causal.masked_fill_(cond < (cond + 1).view(t, 1), 0)
    causal = causal.to(dtype)[None, None, :, :].expand(b, 1, t, t)
    attention_mask = torch.ones(b, t, dtype=torch.long)
    inverted = 1.0 - attention_mask[:, None, None, :].expand(b, 1, t, t).to(dtype)
    expanded = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)
    return expanded + causal


class LlamaForCausalLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(DecoderLayer() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN, RMS_EPS)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.lm_head.weight = self.embed_tokens.weight  # tie_word_embeddings

    def forward(self, input_ids, labels):
        b, t = input_ids.shape
        position_ids = torch.arange(t, dtype=torch.long).unsqueeze(0).view(-1, t)
        mask = causal_mask(b, t, self.embed_tokens.weight.dtype)
        h = self.embed_tokens(input_ids)  # (B, T, H)
        for layer in self.layers:
            h = layer(h, mask, position_ids)
        h = self.norm(h)
        logits = self.lm_head(h).float()  # (B, T, V)
        shift_logits = logits[..., :-1, :].contiguous().view(-1, VOCAB)  # (B*(T-1), V)
        shift_labels = labels[..., 1:].contiguous().view(-1)
        return F.cross_entropy(shift_logits, shift_labels)


def inject_lora(model, dropout=LORA_DROPOUT):
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in TARGETS:
                if hasattr(parent, name):
                    setattr(parent, name, LoraLinear(getattr(parent, name), dropout))
    return [p for n, p in model.named_parameters() if "lora_" in n]


def random_weights(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                continue
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=generator)


def vm_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--lora-dropout", type=float, default=LORA_DROPOUT)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: every frozen base tensor (embeddings, norms, projections) cast with .to(bfloat16) after "
                         "the fp32 random init, LoRA A/B and their AdamW state fp32 (PEFT's casting of x into the "
                         "adapter dtype), no autocast; fp32: everything fp32")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    t0 = time.perf_counter()
    model = LlamaForCausalLM()
    random_weights(model, generator)
    adapters = inject_lora(model, args.lora_dropout)
    if args.dtype == "bf16":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" not in name:
                    p.data = p.data.to(torch.bfloat16)
    model.train()  # LoRA dropout active, as in fine-tuning
    optimizer = torch.optim.AdamW(adapters, lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    build_seconds = time.perf_counter() - t0
    rss_after_build = vm_status("VmRSS")

    step_seconds, cpu_seconds, losses = [], [], []
    for i in range(args.warmup + args.steps):
        input_ids = torch.randint(0, VOCAB, (args.batch, args.seq), generator=generator)
        labels = input_ids.clone()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = model(input_ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        del loss
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        kind = "warmup" if i < args.warmup else "timed"
        print(f"pytorch {kind} step {i}: {elapsed:.2f} s (cpu {cpu:.1f} s) loss {loss_value:.4f}", file=sys.stderr, flush=True)
        if i >= args.warmup:
            step_seconds.append(elapsed)
            cpu_seconds.append(cpu)
            losses.append(loss_value)

    # Raw steps plus the statistics FedLlm.Bench derives itself (median, best), for reading this line on its own.
    median = statistics.median(step_seconds)
    print(json.dumps({
        "implementation": "pytorch",
        "precision": args.dtype,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "tokens_per_step": args.batch * args.seq,
        "step_seconds": step_seconds,
        "cpu_step_seconds": cpu_seconds,
        "losses": losses,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_build_bytes": rss_after_build,
        "build_seconds": build_seconds,
        "trainable_parameters": sum(p.numel() for p in adapters),
        "median_step_seconds": median,
        "tokens_per_s": args.batch * args.seq / median,
    }))


if __name__ == "__main__":
    main()
