using FedLlm.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Modeling;

// The Llama decoder as Hugging Face's modeling_llama.py / modeling_mistral.py / modeling_qwen2.py define it:
//   pre-norm blocks  h = x + Attn(RMSNorm(x));  out = h + MLP(RMSNorm(h))
//   attention        rotary q/k (rotate_half convention), grouped-query heads (k/v shared by heads/kv_heads queries),
//                    causal + padding (+ Mistral sliding window) mask, softmax(qkᵀ/√d)v
//   MLP              SwiGLU: down(silu(gate(x)) * up(x))
//   head             final RMSNorm, lm_head (or the embedding matrix when tie_word_embeddings)
// Module field names are the checkpoint's state-dict keys (model.layers.0.self_attn.q_proj.weight ...).
// Projections are held as nn.Module<Tensor, Tensor> so that Peft.LoraLinear (or a quantised base layer) can stand in.

/// <summary>Multi-head attention with grouped-query key/value heads and rotary positions.</summary>
public sealed class LlamaAttention : nn.Module
{
    private nn.Module<Tensor, Tensor> q_proj;
    private nn.Module<Tensor, Tensor> k_proj;
    private nn.Module<Tensor, Tensor> v_proj;
    private nn.Module<Tensor, Tensor> o_proj;
    private readonly int heads, kvHeads, headDim, layerIndex;

    /// <summary>Grouped-query self-attention of layer <paramref name="layerIndex"/> with rotary positions;
    /// <paramref name="linear"/> builds q, k, v and o (dense by default, or quantised).</summary>
    public LlamaAttention(LlamaConfig c, int layerIndex, ScalarType dtype, Device? device, FrozenLinearFactory? linear = null) : base(nameof(LlamaAttention))
    {
        heads = c.NumAttentionHeads;
        kvHeads = c.NumKeyValueHeads;
        headDim = c.HeadDim;
        this.layerIndex = layerIndex;
        linear ??= DenseLinear.Create;
        q_proj = linear(c.HiddenSize, heads * headDim, c.QkvBias, dtype, device);
        k_proj = linear(c.HiddenSize, kvHeads * headDim, c.QkvBias, dtype, device);
        v_proj = linear(c.HiddenSize, kvHeads * headDim, c.QkvBias, dtype, device);
        o_proj = linear(heads * headDim, c.HiddenSize, c.OutputBias, dtype, device);
        RegisterComponents();
    }

    /// <param name="x">(B, T, H) normalised hidden states.</param>
    /// <param name="cos">(B, 1, T, d) rotary cosines; <paramref name="sin"/> likewise.</param>
    /// <param name="mask">(B, 1, T, S) boolean, true = may attend; null = plain causal over these T tokens.</param>
    /// <param name="cache">Key/value cache for generation, or null.</param>
    /// <param name="sin">(B, 1, T, d) signed rotary sines (<see cref="RotaryEmbedding.Tables"/>).</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
    {
        long B = x.shape[0], T = x.shape[1];
        // Every intermediate handle is disposed here, views included: a handle left to the step's dispose scope keeps
        // its storage alive until the whole step ends, although autograd does not need it (0.5 GB over 30 layers).
        using var qProjected = q_proj.forward(x);                                    // (B, T, h*d)
        using var kProjected = k_proj.forward(x);                                    // (B, T, kv*d)
        using var vProjected = v_proj.forward(x);                                    // (B, T, kv*d)
        using var q0 = SplitHeads(qProjected, heads);                                // (B, h, T, d)
        using var k0 = SplitHeads(kProjected, kvHeads);                              // (B, kv, T, d)
        using var v0 = SplitHeads(vProjected, kvHeads);                              // (B, kv, T, d)
        using var q = RotaryEmbedding.Apply(q0, cos, sin);
        using var kRotated = RotaryEmbedding.Apply(k0, cos, sin);

        Tensor k = kRotated, v = v0;
        if (cache is not null) (k, v) = cache.Append(layerIndex, kRotated, v0); // (B, kv, S, d), S = past + T
        if (T == 1 && heads != kvHeads)
        {
            // One new token per sequence (a decode step): the h/kv query heads that share a key/value head are taken
            // as h/kv query rows of that head, so attention reads the cached keys and values in place instead of
            // copying them h/kv times (repeat_kv) every step. The token sees every cached key, so no causal mask;
            // a padding mask (B, 1, 1, S) broadcasts over the rows just as it did over the heads.
            using var grouped = q.reshape(B, kvHeads, heads / kvHeads, headDim);   // (B, kv, h/kv, d)
            using var groupedOut = mask is null
                ? nn.functional.scaled_dot_product_attention(grouped, k, v)
                : nn.functional.scaled_dot_product_attention(grouped, k, v, mask); // (B, kv, h/kv, d)
            if (cache is not null) { k.Dispose(); v.Dispose(); }
            using var mergedStep = groupedOut.reshape(B, 1, heads * headDim);    // (B, 1, h*d), heads in order
            return o_proj.forward(mergedStep);
        }
        using var kAll = RepeatKeyValue(k);                                        // (B, h, S, d)
        using var vAll = RepeatKeyValue(v);
        if (cache is not null) { k.Dispose(); v.Dispose(); }

        // With no mask the fused kernel applies the causal mask itself (and may use its flash path on CPU).
        using var attended = mask is null
            ? nn.functional.scaled_dot_product_attention(q, kAll, vAll, is_casual: T > 1)
            : nn.functional.scaled_dot_product_attention(q, kAll, vAll, mask);     // (B, h, T, d)
        using var transposed = attended.transpose(1, 2);                             // (B, T, h, d)
        using var merged = transposed.reshape(B, T, heads * headDim);                // (B, T, h*d)
        return o_proj.forward(merged);
    }

    /// <summary>(B, T, n*d) → (B, n, T, d), a view of <paramref name="projected"/>.</summary>
    Tensor SplitHeads(Tensor projected, int n)
    {
        using var split = projected.view(projected.shape[0], projected.shape[1], n, headDim); // (B, T, n, d)
        return split.transpose(1, 2);                                                          // (B, n, T, d)
    }

    /// <summary>(B, kv, S, d) → (B, h, S, d): each key/value head serves heads/kv query heads (repeat_kv).</summary>
    Tensor RepeatKeyValue(Tensor t)
    {
        int repeats = heads / kvHeads;
        if (repeats == 1) return t.alias();
        long B = t.shape[0], S = t.shape[2];
        using var unsqueezed = t.unsqueeze(2);                                      // (B, kv, 1, S, d)
        using var expanded = unsqueezed.expand(B, kvHeads, repeats, S, headDim);     // (B, kv, r, S, d)
        return expanded.reshape(B, heads, S, headDim);
    }

    internal IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> Projections()
    {
        yield return (nameof(q_proj), q_proj);
        yield return (nameof(k_proj), k_proj);
        yield return (nameof(v_proj), v_proj);
        yield return (nameof(o_proj), o_proj);
    }

    internal void ReplaceProjection(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case nameof(q_proj): q_proj = replacement; break;
            case nameof(k_proj): k_proj = replacement; break;
            case nameof(v_proj): v_proj = replacement; break;
            case nameof(o_proj): o_proj = replacement; break;
            default: throw new ArgumentException($"no projection '{name}' in self_attn", nameof(name));
        }
        ModuleSurgery.Reregister(this, name, replacement);
    }
}

/// <summary>The SwiGLU feed-forward block: down(silu(gate(x)) · up(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> gate_proj;
    private nn.Module<Tensor, Tensor> up_proj;
    private nn.Module<Tensor, Tensor> down_proj;

    /// <summary>The SwiGLU MLP: down(silu(gate(x)) · up(x)); <paramref name="linear"/> builds the projections (dense by
    /// default).</summary>
    public LlamaMlp(LlamaConfig c, ScalarType dtype, Device? device, FrozenLinearFactory? linear = null) : base(nameof(LlamaMlp))
    {
        linear ??= DenseLinear.Create;
        gate_proj = linear(c.HiddenSize, c.IntermediateSize, c.MlpBias, dtype, device);
        up_proj = linear(c.HiddenSize, c.IntermediateSize, c.MlpBias, dtype, device);
        down_proj = linear(c.IntermediateSize, c.HiddenSize, c.MlpBias, dtype, device);
        RegisterComponents();
    }

    /// <summary>(B, T, H) → (B, T, H).</summary>
    public override Tensor forward(Tensor x)
    {
        using var gate = gate_proj.forward(x);                   // (B, T, F)
        using var up = up_proj.forward(x);                       // (B, T, F)
        // While training, one node that recomputes silu(gate) in backward instead of keeping it; the same ops otherwise.
        using var product = is_grad_enabled() && (gate.requires_grad || up.requires_grad) ? SwiGluProduct.Apply(gate, up) : Product(gate, up);
        return down_proj.forward(product);                       // (B, T, H)
    }

    static Tensor Product(Tensor gate, Tensor up)
    {
        using var activated = nn.functional.silu(gate);
        return activated * up;
    }

    internal IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> Projections()
    {
        yield return (nameof(gate_proj), gate_proj);
        yield return (nameof(up_proj), up_proj);
        yield return (nameof(down_proj), down_proj);
    }

    internal void ReplaceProjection(string name, nn.Module<Tensor, Tensor> replacement)
    {
        switch (name)
        {
            case nameof(gate_proj): gate_proj = replacement; break;
            case nameof(up_proj): up_proj = replacement; break;
            case nameof(down_proj): down_proj = replacement; break;
            default: throw new ArgumentException($"no projection '{name}' in mlp", nameof(name));
        }
        ModuleSurgery.Reregister(this, name, replacement);
    }
}

/// <summary>One pre-norm transformer block.</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;
    private readonly RmsNorm input_layernorm;
    private readonly RmsNorm post_attention_layernorm;

    /// <summary>Pre-norm decoder layer <paramref name="layerIndex"/>: attention and MLP, each behind an RMSNorm and a
    /// residual.</summary>
    public LlamaDecoderLayer(LlamaConfig c, int layerIndex, ScalarType dtype, Device? device, FrozenLinearFactory? linear = null) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c, layerIndex, dtype, device, linear);
        mlp = new LlamaMlp(c, dtype, device, linear);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The layer's attention (self_attn in the checkpoint).</summary>
    public LlamaAttention SelfAttention => self_attn;

    /// <summary>The layer's MLP.</summary>
    public LlamaMlp Mlp => mlp;

    /// <summary>x + attention(norm(x)), then h + mlp(norm(h)); (B, T, H) → (B, T, H). Arguments as
    /// <see cref="LlamaAttention.Forward"/>.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
    {
        using var normed = input_layernorm.forward(x);
        using var attention = self_attn.Forward(normed, cos, sin, mask, cache);
        // The residual sums name their alpha: `a + b` makes a temporary Scalar 1 inside TorchSharp, which a finalizer
        // can free while libtorch reads it (AdamW.Step), and these run twice per layer in every step.
        using var h = x.add(attention, Runtime.Scalars.One);
        using var normed2 = post_attention_layernorm.forward(h);
        using var feedForward = mlp.forward(normed2);
        return h.add(feedForward, Runtime.Scalars.One);
    }
}

/// <summary>The decoder stack without the language-model head ("model." in checkpoints).</summary>
public sealed class LlamaModel : nn.Module
{
    private readonly TokenEmbedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly RmsNorm norm;

    /// <summary>The decoder stack of <paramref name="c"/>: token embedding, the layers and the final norm;
    /// <paramref name="linear"/> builds the layers' projections.</summary>
    public LlamaModel(LlamaConfig c, ScalarType dtype, Device? device, FrozenLinearFactory? linear = null) : base(nameof(LlamaModel))
    {
        embed_tokens = new TokenEmbedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<LlamaDecoderLayer>();
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new LlamaDecoderLayer(c, i, dtype, device, linear));
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The token embedding (embed_tokens).</summary>
    public TokenEmbedding EmbedTokens => embed_tokens;

    /// <summary>The decoder layers, first to last.</summary>
    public IReadOnlyList<LlamaDecoderLayer> Layers => layers.ToList();

    /// <summary>The RMSNorm after the last layer (norm).</summary>
    public RmsNorm FinalNorm => norm;

    /// <summary>Runs the stack; returns the final-normed hidden states (B, T, H).</summary>
    public Tensor Forward(Tensor inputIds, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
    {
        Tensor h = embed_tokens.forward(inputIds); // (B, T, H)
        foreach (var layer in layers)
        {
            var next = layer.Forward(h, cos, sin, mask, cache);
            h.Dispose();
            h = next;
        }
        var output = norm.forward(h);
        h.Dispose();
        return output;
    }
}
