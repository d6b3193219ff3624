using FedLlm.Quantization;
using FedLlm.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Peft;

/// <summary>
/// A LoRA adapter around a frozen projection, as PEFT's lora.Linear: y = base(x) + B(A(dropout(x))) · scaling.
/// The base layer is wrapped, not edited, so the adapter can be switched off (the reference policy of DPO),
/// merged into the weight for inference, or shipped on its own to a federation server.
/// </summary>
/// <remarks>
/// State-dict names follow PEFT without the adapter name: <c>q_proj.base_layer.weight</c>, <c>q_proj.lora_A.weight</c>
/// ([r, in]) and <c>q_proj.lora_B.weight</c> ([out, r]); PEFT's files use exactly these with a
/// <c>base_model.model.</c> prefix.
/// </remarks>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly FrozenLinear base_layer;
    private readonly AdapterWeight lora_A;
    private readonly AdapterWeight lora_B;
    private readonly double dropout;

    /// <summary>Wraps <paramref name="baseLayer"/> with a rank-r adapter of <paramref name="options"/>: A initialised
    /// as PEFT's Kaiming-uniform (from <paramref name="generator"/> if given), B zero, both fp32 and
    /// trainable.</summary>
    public LoraLinear(FrozenLinear baseLayer, LoraOptions options, Generator? generator = null) : base(nameof(LoraLinear))
    {
        options.Validate();
        base_layer = baseLayer;
        Rank = options.Rank;
        Scaling = options.Scaling;
        dropout = options.Dropout;
        var device = baseLayer.Device;
        // Adapters train in fp32 over any lower-precision base (bf16, int8, NF4); a float64 base (gradient checks) keeps float64.
        var dtype = baseLayer.ComputeDtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        lora_A = new AdapterWeight(Rank, baseLayer.InFeatures, dtype, device);
        lora_B = new AdapterWeight(baseLayer.OutFeatures, Rank, dtype, device);
        ResetParameters(generator);
        RegisterComponents();
    }

    /// <summary>The frozen projection the adapter adds to (base_layer in the checkpoint).</summary>
    public FrozenLinear BaseLayer => base_layer;

    /// <summary>A, (r, in) fp32: lora_A.weight.</summary>
    public Parameter LoraA => lora_A.Weight;

    /// <summary>B, (out, r) fp32: lora_B.weight; zero at initialisation, so a fresh adapter changes nothing.</summary>
    public Parameter LoraB => lora_B.Weight;

    /// <summary>LoRA rank r of the update B·A.</summary>
    public int Rank { get; }

    /// <summary>The factor on B·A·x: alpha / r, or alpha / √r with rsLoRA.</summary>
    public double Scaling { get; }

    /// <summary>False turns the adapter off: the layer computes its frozen base alone.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>True while B·A·scaling is folded into the base weight.</summary>
    public bool Merged { get; private set; }

    /// <summary>
    /// PEFT's default initialisation: A Kaiming-uniform with a = √5 (the nn.Linear default, bound 1/√in), B zero,
    /// so the adapted model starts exactly at the base model.
    /// </summary>
    public void ResetParameters(Generator? generator = null)
    {
        using var _ = no_grad();
        double bound = 1.0 / Math.Sqrt(base_layer.InFeatures);
        // Drawn on the CPU (the generator's device) whatever the adapter's, so a seed gives the same adapter everywhere.
        using var uniform = rand(lora_A.Weight.shape, lora_A.Weight.dtype, CPU, generator: generator);
        // Named Scalars (Runtime.Scalars); u·2b + (−b) is u·2b − b exactly.
        using var width = (2 * bound).ToScalar();
        using var negativeBound = (-bound).ToScalar();
        using var scaled = uniform.mul(width);
        lora_A.Weight.copy_(scaled.add(negativeBound, Runtime.Scalars.One));
        lora_B.Weight.zero_();
    }

    /// <summary>base(x) + B·A·dropout(x)·scaling in the input's dtype, the adapter computed in fp32 (in bf16 from
    /// fp32 master weights while training over bf16); the base alone when disabled or merged.</summary>
    public override Tensor forward(Tensor x)
    {
        var result = base_layer.forward(x);                       // (B, T, out)
        if (!Enabled || Merged) return result;
        var inputDtype = x.dtype;
        bool dropping = dropout > 0 && training;
        // Adapter weights stay fp32 whatever the base computes in (bf16, int8...). In training over bf16 the adapter
        // computes in bf16 from casts of them (below); otherwise the activations are cast to fp32 and back. While
        // training, the node casts and drops inside, so autograd keeps x as it is (shared by q, k and v) instead of a
        // 4-byte copy per adapter; without gradients (inference) the plain ops are cheaper.
        DropoutKey? dropoutKey = dropping ? DrawDropoutKey(x) : null;
        if (TrainsInInputDtype(inputDtype))
        {
            // Training over a bf16 compute dtype (a bf16 base, or int8/NF4 dequantised to bf16): the adapter computes in
            // bf16 from casts of its fp32 weights, as PEFT runs under HF's bf16 autocast. The fp32 weights stay the
            // master copy: the casts' backward brings the gradients to them in fp32, and the optimizer updates them there.
            // No fp32 copy of every adapter input and of its gradient is made, which is most of what a bf16 step's
            // adapters added to its peak memory (bench/README.md).
            using var a = lora_A.Weight.to(inputDtype);
            using var b = lora_B.Weight.to(inputDtype);
            using var down16 = LoraDownProjection.Apply(x, dropoutKey, a);                                       // (B, T, r)
            using var up16 = nn.functional.linear(down16, b);                                                // (B, T, out)
            return AddScaled(result, up16);
        }
        using var down = dropping || (inputDtype != lora_A.Weight.dtype && is_grad_enabled())
            ? LoraDownProjection.Apply(x, dropoutKey, lora_A.Weight)
            : Plain(x);                                                // (B, T, r)
        using var up = nn.functional.linear(down, lora_B.Weight);      // (B, T, out)
        using var delta = up.to(inputDtype);
        return AddScaled(result, delta);
    }

    /// <summary>result += delta · scaling, with scaling applied as PEFT applies it.</summary>
    /// <remarks>libtorch rounds an alpha (and an in-place multiplier) to a bf16 or fp16 tensor's dtype before using it,
    /// while PEFT multiplies out of place, which keeps the scaling in float. The alpha form saves a pass and is exact
    /// whenever the dtype holds the scaling (α/r = 2 and every power of two); otherwise (rsLoRA's α/√r) the product
    /// is taken out of place first. Scalars are named: an implicit one's finalizer can free it mid-call (AdamW.Step).</remarks>
    Tensor AddScaled(Tensor result, Tensor delta)
    {
        using var scaling = Scaling.ToScalar();
        if (HoldsExactly(result.dtype, Scaling)) return result.add_(delta, scaling);
        using var scaled = delta.mul(scaling);
        return result.add_(scaled, Runtime.Scalars.One);
    }

    /// <summary>Whether <paramref name="dtype"/> represents <paramref name="value"/> exactly (float32 and wider: as
    /// libtorch's float arithmetic sees it, always).</summary>
    internal static bool HoldsExactly(ScalarType dtype, double value) => dtype switch
    {
        ScalarType.BFloat16 => (double)(float)value == value && (BitConverter.SingleToInt32Bits((float)value) & 0xFFFF) == 0,
        ScalarType.Float16 => (double)(Half)value == value,
        _ => true,
    };

    /// <summary>True while training (with gradients) on a bf16 input with fp32 adapter weights: the adapter then
    /// computes in bf16 (see <see cref="forward"/>). Inference keeps the fp32 adapter path PEFT uses without autocast.</summary>
    bool TrainsInInputDtype(ScalarType inputDtype) =>
        training && inputDtype == ScalarType.BFloat16 && lora_A.Weight.dtype == ScalarType.Float32 && is_grad_enabled();

    Tensor Plain(Tensor x)
    {
        using var x32 = x.to(lora_A.Weight.dtype);
        return nn.functional.linear(x32, lora_A.Weight);
    }

    /// <summary>
    /// Where dropout draws its masks. libtorch's dropout draws from the process-wide generator, which anything else in
    /// the process (another client, a concurrent test) also draws from and reseeds; an explicit generator keeps a
    /// run's masks a function of its own seed. Null falls back to a generator seeded once at 0.
    /// </summary>
    public Generator? DropoutGenerator { get; set; }

    /// <summary>The key of inverted dropout's keep-mask for x (kept with probability 1 − p), drawn from
    /// <see cref="DropoutGenerator"/>; <see cref="LoraDownProjection"/> makes the mask from it in forward and again in
    /// backward instead of keeping the mask or the dropped input.</summary>
    DropoutKey DrawDropoutKey(Tensor x)
    {
        DropoutGenerator ??= new Generator(0, x.device); // the mask's key is drawn on the generator's device
        return DropoutMask.Draw(dropout, DropoutGenerator);
    }

    /// <summary>ΔW = B·A·scaling, the one formula merge and unmerge share ([out, in], fp32).</summary>
    public Tensor DeltaWeight()
    {
        using var _ = no_grad();
        using var product = lora_B.Weight.matmul(lora_A.Weight);
        return product * Scaling;
    }

    /// <summary>
    /// Folds the adapter into the base weight. The sum is checked on a copy first, so a NaN never reaches the base.
    /// A quantised base (int8, NF4) refuses: re-quantising the sum would silently change the model.
    /// </summary>
    public void Merge()
    {
        if (Merged) return;
        if (!base_layer.SupportsMerge) throw new NotSupportedException(base_layer.MergeUnsupportedMessage);
        using var _ = no_grad();
        using var delta = DeltaWeight();
        using var current = base_layer.DequantizedWeight(delta.dtype);
        using var merged = current.add(delta, Runtime.Scalars.One);
        if (!merged.isfinite().all().item<bool>())
            throw new InvalidOperationException("merging the LoRA adapter would put NaN or Inf into the base weight");
        base_layer.OverwriteWeight(merged);
        Merged = true;
    }

    /// <summary>Subtracts the adapter again (exact up to float rounding).</summary>
    public void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        using var current = base_layer.DequantizedWeight(delta.dtype);
        using var restored = current - delta;
        base_layer.OverwriteWeight(restored);
        Merged = false;
    }

    /// <summary>The trainable matrix of one side of the adapter, a module of its own so its key is "lora_A.weight".</summary>
    private sealed class AdapterWeight : nn.Module
    {
        private readonly Parameter weight;

        public AdapterWeight(long rows, long columns, ScalarType dtype, Device device) : base(nameof(AdapterWeight))
        {
            weight = new Parameter(zeros(new[] { rows, columns }, dtype, device), requires_grad: true);
            RegisterComponents();
        }

        public Parameter Weight => weight;
    }
}
