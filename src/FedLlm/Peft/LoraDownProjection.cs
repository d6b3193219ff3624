using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace FedLlm.Peft;

/// <summary>
/// LoRA's down projection A · dropout(x), computed in A's dtype, as one autograd node that saves x as it came (in the
/// base layer's dtype), A and the dropout mask's key, and recomputes the cast, the mask and the dropped input in backward.
/// </summary>
/// <remarks>
/// Written as plain ops, autograd keeps what the A matmul reads for A's gradient: the dropped input, and below fp32
/// also the fp32 copy of x, each 4 bytes per element and each its own per projection (q, k and v each cast and drop the
/// same normed input). Here nothing input-sized is kept but x itself, shared by every adapter that reads it (2 bytes
/// per element in bf16). The mask is not kept either: it is a pure function of its <see cref="DropoutKey"/>
/// (<see cref="DropoutMask"/>), drawn again in backward for a few milliseconds per step, and never made as a tensor:
/// <see cref="DropoutMask.Zeroed"/> zeroes the dropped elements in the same pass that draws their bits. Kept, the masks
/// were a byte per input element, and their small blocks, freed only in backward between the activations, left holes in
/// the heap that raised the step's peak memory far beyond their own size (bench/README.md).
/// Dropout's 1/(1 − p) is applied on the rank-r side, where a tensor has r values per token instead of the input's
/// width: (x ⊙ keep · s) Aᵀ = s · ((x ⊙ keep) Aᵀ), ∂A = (s·g)ᵀ (x ⊙ keep) and ∂x = ((s·g) A) ⊙ keep, with g = ∂down.
/// Each of the three then passes over an input-sized tensor once (the masking) instead of twice (masking, then
/// scaling); results equal the plain cast → dropout → linear to rounding (not bit for bit: the factor is applied to
/// different values).
/// </remarks>
internal sealed class LoraDownProjection : SingleTensorFunction<LoraDownProjection>
{
    const string DropoutKeyKey = "dropout", InputNeedsGradientKey = "x_needs_grad";

    // The gradients returned by the previous backward call on this thread. libtorch has taken its own references by the
    // time the next node runs; without this, our handles would keep every adapter's input gradient alive until the
    // training step's dispose scope ends (as FrozenLinearFunction does; backward of CPU graphs runs on the calling thread).
    [ThreadStatic] static List<Tensor>? returned;

    /// <inheritdoc/>
    public override string Name => nameof(LoraDownProjection);

    /// <summary>(cast(x) ⊙ keep · 1/(1 − p)) · Aᵀ in A's dtype, differentiable in x and A.</summary>
    /// <param name="x">The input (…, in), in any floating dtype.</param>
    /// <param name="dropout">The mask's key (<see cref="DropoutMask.Draw"/>), or null for no dropout.</param>
    /// <param name="weight">A, (r, in).</param>
    public static Tensor Apply(Tensor x, DropoutKey? dropout, Tensor weight) => apply(x, dropout, weight);

    /// <summary>What A multiplies: x in A's dtype, with the dropped elements zeroed when there is a mask (unscaled: the
    /// 1/(1 − p) goes to the rank-r side).</summary>
    static Tensor Masked(Tensor x, DropoutKey? dropout, ScalarType dtype)
    {
        using var lifted = x.to(dtype); // an alias when x is already in A's dtype
        return dropout is { } d ? DropoutMask.Zeroed(lifted, d) : lifted.alias();
    }

    /// <summary>t · <paramref name="scale"/>, out of place: an in-place multiply by a Scalar rounds the factor to a bf16
    /// tensor's dtype first, an out-of-place one does not.</summary>
    static Tensor Scaled(Tensor t, double scale)
    {
        using var factor = scale.ToScalar(); // named: an implicit Scalar's finalizer can free it mid-call (AdamW.Step)
        return t.mul(factor);
    }

    /// <inheritdoc/>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (x, dropout, weight) = ((Tensor)vars[0], (DropoutKey?)vars[1], (Tensor)vars[2]);
        ctx.save_for_backward([x, weight]);
        ctx.save_data(DropoutKeyKey, dropout!); // null without dropout
        ctx.save_data(InputNeedsGradientKey, x.requires_grad);
        ctx.set_materialize_grads(false);
        using var masked = Masked(x, dropout, weight.dtype);
        if (dropout is null) return nn.functional.linear(masked, weight);    // (…, r)
        using var down = nn.functional.linear(masked, weight);
        return Scaled(down, dropout.Value.Scale);                            // (…, r)
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        returned ??= new List<Tensor>(2);
        foreach (var t in returned) t.Dispose();
        returned.Clear();
        if (gradOutput is null || gradOutput.IsInvalid) return [null!, null!, null!];
        var saved = ctx.get_saved_variables();
        try
        {
            var (x, weight) = (saved[0], saved[1]);
            var dropout = (DropoutKey?)ctx.get_data(DropoutKeyKey);
            long rank = weight.shape[0], inFeatures = weight.shape[1];
            // g · s once, on the rank-r side; both gradients then need only the forward's mask, drawn again from its key.
            using var g = dropout is null ? gradOutput.alias() : Scaled(gradOutput, dropout.Value.Scale);   // (…, r)
            Tensor weightGradient;
            using (var masked = Masked(x, dropout, weight.dtype))
            using (var g2 = g.reshape(-1, rank))                            // (N, r)
            using (var gT = g2.t())                                         // (r, N)
            using (var d2 = masked.reshape(-1, inFeatures))                 // (N, in)
                weightGradient = gT.mm(d2);                                 // (r, in)
            Tensor? inputGradient = null;
            if ((bool)ctx.get_data(InputNeedsGradientKey))
            {
                Tensor dropped;                                             // (…, in), A's dtype
                using (var throughA = g.matmul(weight))
                    dropped = dropout is { } d ? DropoutMask.Zeroed(throughA, d) : throughA.alias();
                if (dropped.dtype == x.dtype) inputGradient = dropped;      // no copy when x is in A's dtype
                else using (dropped) inputGradient = dropped.to(x.dtype);
            }
            returned.Add(weightGradient);
            if (inputGradient is not null) returned.Add(inputGradient);
            return [inputGradient!, null!, weightGradient];
        }
        finally
        {
            foreach (var t in saved) t.Dispose();
            gradOutput.Dispose(); // our handle only; libtorch keeps its own
            // Release what forward saved now, as libtorch's own nodes do after their backward: a TorchSharp node keeps its
            // saved tensors until the whole graph is freed, so every layer's inputs and masks would stay alive (and pin
            // the heap between them) until the training step ends. No FedLlm graph is back-propagated twice.
            ctx.Dispose();
        }
    }
}
