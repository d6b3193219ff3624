using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace FedLlm.Peft;

/// <summary>
/// LoRA's down projection of a dropped-out input, A(dropout(x)) = (x ⊙ keep / (1 − p)) · Aᵀ, as one autograd node that
/// saves x, the bool keep-mask and A, and recomputes the dropped input in backward.
/// </summary>
/// <remarks>
/// Written as plain ops, autograd keeps the dropped input (4 bytes per element of x, for A's gradient) on top of x
/// itself, which the base layer's neighbours keep alive anyway; for the seven projections of a layer that was most of the
/// layer's saved activations. Here the extra memory is the mask's 1 byte per element. The forward computes the same ops
/// in the same order as the plain version, so its output is bitwise the same; the backward computes
/// ∂A = gᵀ · dropped and ∂x = (g · A) ⊙ keep / (1 − p) with g = ∂down.
/// </remarks>
internal sealed class DroppedDownProjection : SingleTensorFunction<DroppedDownProjection>
{
    const string ScaleKey = "scale", InputNeedsGradientKey = "x_needs_grad";

    // The gradients returned by the previous backward call on this thread. libtorch has taken its own references by the
    // time the next node runs; without this, our handles would keep every adapter's input gradient alive until the
    // training step's dispose scope ends (as FrozenLinearFunction does; backward of CPU graphs runs on the calling thread).
    [ThreadStatic] static List<Tensor>? returned;

    /// <inheritdoc/>
    public override string Name => nameof(DroppedDownProjection);

    /// <summary>(x ⊙ keep · scale) · Aᵀ, differentiable in x and A.</summary>
    /// <param name="x">The input (…, in).</param>
    /// <param name="keep">Bool mask shaped like x: true = kept.</param>
    /// <param name="weight">A, (r, in).</param>
    /// <param name="scale">1 / (1 − p).</param>
    public static Tensor Apply(Tensor x, Tensor keep, Tensor weight, double scale) => apply(x, keep, weight, scale);

    /// <summary>Same ops as the plain version: x · keep, then · scale, then linear.</summary>
    static Tensor Dropped(Tensor x, Tensor keep, double scale)
    {
        using var masked = x * keep;
        return masked.mul(scale);
    }

    /// <inheritdoc/>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (x, keep, weight, scale) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (double)vars[3]);
        ctx.save_for_backward([x, keep, weight]);
        ctx.save_data(ScaleKey, scale);
        ctx.save_data(InputNeedsGradientKey, x.requires_grad);
        ctx.set_materialize_grads(false);
        using var dropped = Dropped(x, keep, scale);
        return nn.functional.linear(dropped, weight); // (…, r)
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        returned ??= new List<Tensor>(2);
        foreach (var t in returned) t.Dispose();
        returned.Clear();
        if (gradOutput is null || gradOutput.IsInvalid) return [null!, null!, null!, null!];
        var saved = ctx.get_saved_variables();
        try
        {
            var (x, keep, weight) = (saved[0], saved[1], saved[2]);
            double scale = (double)ctx.get_data(ScaleKey);
            long rank = weight.shape[0], inFeatures = weight.shape[1];
            Tensor weightGradient;
            using (var dropped = Dropped(x, keep, scale))
            using (var g2 = gradOutput.reshape(-1, rank))                   // (N, r)
            using (var gT = g2.t())                                         // (r, N)
            using (var d2 = dropped.reshape(-1, inFeatures))                // (N, in)
                weightGradient = gT.mm(d2);                                 // (r, in)
            Tensor? inputGradient = null;
            if ((bool)ctx.get_data(InputNeedsGradientKey))
            {
                using var throughA = gradOutput.matmul(weight);            // (…, in)
                inputGradient = Dropped(throughA, keep, scale);
            }
            returned.Add(weightGradient);
            if (inputGradient is not null) returned.Add(inputGradient);
            return [inputGradient!, null!, weightGradient, null!];
        }
        finally
        {
            foreach (var t in saved) t.Dispose();
            gradOutput.Dispose(); // our handle only; libtorch keeps its own
        }
    }
}
