using FedLlm.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Modeling;

/// <summary>
/// A Llama-family decoder with its language-model head: the model FedLlm fine-tunes.
/// Build it with <see cref="ModelLoader"/> from a checkpoint folder, or with <see cref="CreateRandom"/> for tests.
/// </summary>
public sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly DenseLinear? lm_head; // absent when the head shares the embedding matrix
    private readonly RotaryEmbedding rotary;

    /// <param name="dtype">Activations, embeddings, norms and the head.</param>
    /// <param name="baseLayers">Builds the seven decoder projections (dense in <paramref name="dtype"/> by default; int8 or NF4 when loaded so).
    /// The head stays dense, as bitsandbytes leaves lm_head unquantised.</param>
    /// <param name="config">The architecture; validated here.</param>
    /// <param name="device">Where the weights live; null = the CPU.</param>
    public LlamaForCausalLM(LlamaConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null, FrozenLinearFactory? baseLayers = null)
        : base(nameof(LlamaForCausalLM))
    {
        config.Validate();
        Config = config;
        Dtype = dtype;
        // Resolved once and handed to every part, so that Device is where the weights really are (a null would send
        // them to torch's default device, which need not be the CPU).
        Device = device ?? CPU;
        model = new LlamaModel(config, dtype, Device, baseLayers);
        lm_head = config.TieWordEmbeddings ? null : new DenseLinear(config.HiddenSize, config.VocabSize, false, dtype, Device);
        rotary = new RotaryEmbedding(config, Device);
        // Judged before any adapter wraps them: whether the base projections are dense (fp32/bf16), not quantised.
        denseBase = model.Layers.All(l => l.SelfAttention.Projections().Concat(l.Mlp.Projections()).All(p => p.Module is DenseLinear));
        RegisterComponents();
    }

    private readonly bool denseBase;

    /// <summary>
    /// Recompute each decoder layer's activations during backward instead of keeping them (HF's
    /// gradient_checkpointing_enable); <see cref="Training.CausalLmStep"/> honours it. Same gradients, less memory, one more forward.
    /// </summary>
    public bool ActivationCheckpointing { get; set; }

    /// <summary>The architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The dtype of activations, embeddings, norms and the head.</summary>
    public ScalarType Dtype { get; }

    /// <summary>Where the weights are.</summary>
    public Device Device { get; }

    /// <summary>The decoder stack (embedding, layers, final norm).</summary>
    public LlamaModel Model => model;

    /// <summary>The output projection's weight: lm_head, or the embedding matrix when tied.</summary>
    public Tensor HeadWeight => lm_head?.Weight ?? model.EmbedTokens.Weight;

    /// <summary>Final hidden states (B, T, H).</summary>
    /// <param name="inputIds">(B, T) int64.</param>
    /// <param name="attentionMask">(B, S) with 1 for real tokens and 0 for padding, S = cached + T; null = no padding.</param>
    /// <param name="positionIds">(B, T) int64; default past..past+T-1 as transformers does without explicit positions.</param>
    /// <param name="cache">Key/value cache for incremental generation (appended to and advanced), or null.</param>
    public Tensor HiddenStates(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KvCache? cache = null)
    {
        var (cos, sin, mask) = AttentionInputs(inputIds, attentionMask, positionIds, cache);
        using var _cos = cos;
        using var _sin = sin;
        using var _mask = mask;
        var hidden = model.Forward(inputIds, cos, sin, mask, cache);
        cache?.Advance(inputIds.shape[1]);
        return hidden;
    }

    /// <summary>Rotary tables (B, 1, T, d) and the attention mask (or null) every decoder layer takes; owned by the caller.</summary>
    internal (Tensor Cos, Tensor Sin, Tensor? Mask) AttentionInputs(Tensor inputIds, Tensor? attentionMask, Tensor? positionIds = null, KvCache? cache = null)
    {
        long B = inputIds.shape[0], T = inputIds.shape[1];
        long past = cache?.Length ?? 0;
        using var positions = positionIds?.alias() ?? DefaultPositions(past, B, T, inputIds.device);
        var (cos, sin) = rotary.Tables(positions, Dtype);
        var mask = AttentionMask.Build(attentionMask, T, past, Config.SlidingWindow, inputIds.device);
        return (cos, sin, mask);
    }

    static Tensor DefaultPositions(long past, long B, long T, Device device)
    {
        using var range = Runtime.Scalars.Range(past, past + T, device);   // (T)
        using var row = range.unsqueeze(0);                                 // (1, T)
        return row.expand(B, T);
    }

    /// <summary>Logits (B, T, V) for every position.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KvCache? cache = null)
    {
        using var hidden = HiddenStates(inputIds, attentionMask, positionIds, cache);
        return Head(hidden);
    }

    /// <summary>Logits (B, V) of the last position only, for generation: the prefill of a T-token prompt then projects
    /// one row per sequence through the (V × H) head instead of T (transformers' logits_to_keep=1).</summary>
    /// <param name="inputIds">(B, T) int64.</param>
    /// <param name="attentionMask">As <see cref="HiddenStates"/>.</param>
    /// <param name="positionIds">As <see cref="HiddenStates"/>.</param>
    /// <param name="cache">As <see cref="HiddenStates"/>.</param>
    public Tensor LastLogits(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KvCache? cache = null)
    {
        using var hidden = HiddenStates(inputIds, attentionMask, positionIds, cache); // (B, T, H)
        using var last = hidden.select(1, hidden.shape[1] - 1);                         // (B, H)
        return Head(last);                                                               // (B, V)
    }

    /// <summary>Begins the threading of a decode step for <paramref name="inputIds"/> (B, T) on this thread
    /// (<see cref="Runtime.DecodeThreading"/>) when every product of the step runs on <see cref="DecodeGemv"/>: a CPU
    /// model with dense weights, B·T rows it takes, no gradient recorded. Otherwise, and for a prefill, nothing changes.
    /// Dispose the result after the step's sampling.</summary>
    public Runtime.DecodeThreading.Step BeginDecodeStep(Tensor inputIds) =>
        denseBase && Device.type == DeviceType.CPU && !is_grad_enabled() && DecodeGemv.Takes(inputIds.shape[0] * inputIds.shape[1], Dtype)
            ? Runtime.DecodeThreading.Begin()
            : default;

    /// <summary>Projects hidden states (…, H) to vocabulary logits (…, V); the few rows of a decode step through
    /// <see cref="DecodeLinear"/>.</summary>
    public Tensor Head(Tensor hidden) => DecodeLinear.Forward(hidden, HeadWeight);

    /// <summary>
    /// The causal-LM loss of transformers: position t predicts token t+1, cross-entropy averaged over the
    /// labels that are not −100.
    /// </summary>
    /// <param name="labels">(B, T) int64, −100 where no loss is taken (prompt, padding).</param>
    /// <param name="inputIds">(B, T) int64.</param>
    /// <param name="attentionMask">(B, T) with 1 for real tokens and 0 for padding; null = no padding.</param>
    public Tensor Loss(Tensor inputIds, Tensor labels, Tensor? attentionMask = null)
    {
        using var logits = Forward(inputIds, attentionMask);
        return CausalLmLoss(logits, labels);
    }

    /// <summary>Cross-entropy of logits (B, T, V) against labels shifted by one, mean over labels ≠ −100.</summary>
    public static Tensor CausalLmLoss(Tensor logits, Tensor labels)
    {
        long T = logits.shape[1], V = logits.shape[2];
        using var shiftedLogits = logits.narrow(1, 0, T - 1).reshape(-1, V);       // (B*(T-1), V)
        using var shiftedLabels = labels.narrow(1, 1, T - 1).reshape(-1);          // (B*(T-1))
        // Softmax statistics in at least fp32, as transformers upcasts logits before the loss.
        using var logits32 = shiftedLogits.to(shiftedLogits.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32);
        return nn.functional.cross_entropy(logits32, shiftedLabels, ignore_index: -100);
    }

    /// <summary>A model with random weights (normal, std <paramref name="std"/>; norms at 1), for tests and benchmarks.</summary>
    /// <param name="embeddingStd">Std of the token embedding (and so of a tied head); default <paramref name="std"/>.</param>
    /// <param name="config">The architecture.</param>
    /// <param name="seed">Seed of the weights' generator, so two calls build the same model.</param>
    /// <param name="std">Std of every weight matrix.</param>
    /// <param name="dtype">The model's dtype.</param>
    /// <param name="device">Where the weights live; null = the CPU.</param>
    public static LlamaForCausalLM CreateRandom(LlamaConfig config, long seed, double std = 0.02, ScalarType dtype = ScalarType.Float32, Device? device = null,
        double? embeddingStd = null)
    {
        var result = new LlamaForCausalLM(config, dtype, device);
        var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, parameter) in result.named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) parameter.fill_(Runtime.Scalars.One);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
            else
            {
                double scale = name == "model.embed_tokens.weight" ? embeddingStd ?? std : std;
                // Drawn on the CPU, whatever the model's device, so a seed gives the same weights everywhere.
                // randn × scale is what torch.normal(0, scale) computes; the scale is an explicit Scalar kept alive
                // across the native call (torch.normal's own temporary can be finalised mid-call under GC pressure).
                using var values = randn(parameter.shape, ScalarType.Float32, CPU, generator: generator);
                using (var scaleScalar = scale.ToScalar()) values.mul_(scaleScalar);
                parameter.copy_(values);
            }
        }
        return result;
    }

    /// <summary>Freezes every parameter (the base stays frozen; adapters re-enable their own).</summary>
    public void FreezeAll()
    {
        foreach (var p in parameters()) p.requires_grad = false;
    }

    /// <summary>Frees the rotary tables with the modules.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing) rotary.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Builds the boolean attention mask (B, 1, T, S), true where a query may attend to a key.</summary>
internal static class AttentionMask
{
    static bool HasPadding(Tensor paddingMask)
    {
        using var zeros = paddingMask.eq(Runtime.Scalars.IntegerZero);
        using var any = zeros.any();
        return any.item<bool>();
    }

    /// <returns>null when plain causal attention over the new tokens is exact (no padding, no window, no cache).</returns>
    public static Tensor? Build(Tensor? paddingMask, long T, long past, int? slidingWindow, Device device)
    {
        long S = past + T;
        bool hasPadding = paddingMask is not null && HasPadding(paddingMask);
        bool windowMatters = slidingWindow is { } w && S > w;
        if (!hasPadding && !windowMatters && (past == 0 || T == 1)) return null;

        using var scope = NewDisposeScope();
        // Every Scalar named (Runtime.Scalars): this runs for every forward that has padding or a window.
        var queryPositions = Runtime.Scalars.Range(past, S, device).unsqueeze(1);   // (T, 1)
        var keyPositions = Runtime.Scalars.Range(0, S, device).unsqueeze(0);        // (1, S)
        var allowed = keyPositions <= queryPositions;                                 // (T, S) causal
        if (slidingWindow is { } window)
        {
            using var windowScalar = ((long)window).ToScalar();
            allowed = allowed & (keyPositions > queryPositions.sub(windowScalar));
        }
        allowed = allowed.unsqueeze(0).unsqueeze(0);                                  // (1, 1, T, S)
        if (hasPadding)
        {
            var keys = paddingMask!.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);    // (B, 1, 1, S)
            allowed = allowed & keys;                                                 // (B, 1, T, S)
            // A query with no visible key (a left-padding position) would produce NaN, which leaks into real tokens
            // through the next layer's values; let such rows see their own position, as transformers unmasks them.
            var empty = allowed.any(-1, keepdim: true).logical_not();                 // (B, 1, T, 1)
            var diagonal = (keyPositions == queryPositions).unsqueeze(0).unsqueeze(0);
            allowed = allowed | (empty & diagonal);
        }
        return allowed.MoveToOuterDisposeScope();
    }
}
