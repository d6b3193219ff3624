using FedLlm.Quantization;
using FedLlm.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Serving;

/// <summary>One adapter's matrices at one projection: A [r, in], B [out, r] and its scaling (alpha/r or alpha/√r).</summary>
public sealed record LoraPair(Tensor A, Tensor B, double Scaling);

/// <summary>
/// A frozen projection with any number of LoRA adapters kept loaded side by side, applied per batch row as
/// <see cref="AdapterRouting"/> says: y_b = base(x_b) + B_s(A_s(x_b)) · scaling_s for row b routed to adapter s.
/// </summary>
/// <remarks>
/// The same computation as <see cref="Peft.LoraLinear"/> (fp32 adapter over any base precision, no dropout at inference),
/// but gathered per adapter group, as multi-LoRA servers (S-LoRA, Punica, vLLM) batch requests for different adapters
/// through one base forward pass: the base weight is read once for all rows, each adapter only for its rows.
/// </remarks>
public sealed class MultiLoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly FrozenLinear base_layer;
    private readonly Dictionary<int, LoraPair> adapters = new();
    private readonly AdapterRouting routing;

    /// <summary>Wraps <paramref name="baseLayer"/> with no adapter yet; <paramref name="routing"/> says which rows of
    /// each batch use which adapter.</summary>
    public MultiLoraLinear(FrozenLinear baseLayer, AdapterRouting routing) : base(nameof(MultiLoraLinear))
    {
        base_layer = baseLayer;
        this.routing = routing;
        RegisterComponents();
    }

    /// <summary>The frozen projection every adapter adds to.</summary>
    public FrozenLinear BaseLayer => base_layer;

    /// <summary>The adapters present at this projection, by slot (an adapter that does not target it is absent).</summary>
    public IReadOnlyDictionary<int, LoraPair> Adapters => adapters;

    /// <summary>Adds an adapter's matrices under <paramref name="slot"/>; the layer owns them from now on.</summary>
    public void Add(int slot, LoraPair pair)
    {
        if (pair.A.shape[1] != base_layer.InFeatures || pair.B.shape[0] != base_layer.OutFeatures || pair.A.shape[0] != pair.B.shape[1])
            throw new ArgumentException($"adapter shapes A {Shape(pair.A)}, B {Shape(pair.B)} do not fit a [{base_layer.OutFeatures}, {base_layer.InFeatures}] projection");
        adapters.Add(slot, pair);
    }

    static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    /// <summary>base(x) plus, for each adapter slot routed in this batch, B·A·x·scaling on that slot's rows; (B, T, in)
    /// → (B, T, out).</summary>
    public override Tensor forward(Tensor x)
    {
        var result = base_layer.forward(x);                                  // (B, T, out)
        foreach (var (slot, rows) in routing.Groups)
        {
            if (!adapters.TryGetValue(slot, out var pair)) continue;
            using var scope = NewDisposeScope();
            var input = rows is null ? x : x.index_select(0, rows);           // (b, T, in)
            var down = nn.functional.linear(input.to(pair.A.dtype), pair.A);   // (b, T, r)
            using var scaling = pair.Scaling.ToScalar();   // named, not an implicit Scalar a finalizer could free mid-call (Runtime.Scalars)
            var delta = nn.functional.linear(down, pair.B).mul_(scaling).to(result.dtype); // (b, T, out)
            if (rows is null) result.add_(delta, Runtime.Scalars.One);
            else result.index_add_(0, rows, delta, Runtime.Scalars.One);
        }
        return result;
    }

    /// <summary>Frees every adapter's matrices with the module.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var pair in adapters.Values) { pair.A.Dispose(); pair.B.Dispose(); }
        base.Dispose(disposing);
    }
}
