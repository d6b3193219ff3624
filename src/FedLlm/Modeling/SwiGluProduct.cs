using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace FedLlm.Modeling;

/// <summary>
/// SwiGLU's product silu(gate) · up as one autograd node that saves gate and up, and recomputes silu(gate) in backward.
/// </summary>
/// <remarks>
/// Written as plain ops, autograd keeps gate (for SiLU's gradient), silu(gate) and up (for the product's): three
/// (B, T, intermediate) tensors, the largest activations of a decoder layer. silu(gate) costs one elementwise pass to
/// recompute, so this node keeps two of them. The forward is the same two ops, so its output is bitwise the same; the
/// backward runs the same kernels on the same values (∂up = g · silu(gate), ∂silu = g · up, and SiLU's own backward
/// through a recomputed SiLU), so the gradients are bitwise the same too.
/// </remarks>
internal sealed class SwiGluProduct : SingleTensorFunction<SwiGluProduct>
{
    // The gradients returned by the previous backward call on this thread, released at the next one: libtorch has taken
    // its own references by then (as LoraDownProjection and FrozenLinearFunction do).
    [ThreadStatic] static List<Tensor>? returned;

    /// <inheritdoc/>
    public override string Name => nameof(SwiGluProduct);

    /// <summary>silu(<paramref name="gate"/>) · <paramref name="up"/>, both (…, F).</summary>
    public static Tensor Apply(Tensor gate, Tensor up) => apply(gate, up);

    /// <inheritdoc/>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (gate, up) = ((Tensor)vars[0], (Tensor)vars[1]);
        ctx.save_for_backward([gate, up]);
        ctx.set_materialize_grads(false);
        using var activated = nn.functional.silu(gate);
        return activated * up;
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
    {
        returned ??= new List<Tensor>(2);
        foreach (var t in returned) t.Dispose();
        returned.Clear();
        if (gradOutput is null || gradOutput.IsInvalid) return [null!, null!];
        var saved = ctx.get_saved_variables();
        try
        {
            var (gate, up) = (saved[0], saved[1]);
            Tensor upGradient, gateGradient;
            using (var gateLeaf = gate.detach().requires_grad_(true))
            {
                using var enabled = enable_grad();
                using var activated = nn.functional.silu(gateLeaf);
                upGradient = gradOutput * activated;
                using var activatedGradient = gradOutput * up;
                gateGradient = grad([activated], [gateLeaf], [activatedGradient])[0];
            }
            returned.Add(gateGradient);
            returned.Add(upGradient);
            return [gateGradient, upGradient];
        }
        finally
        {
            foreach (var t in saved) t.Dispose();
            gradOutput.Dispose(); // our handle only; libtorch keeps its own
            // Release what forward saved now, as libtorch's own nodes do after their backward: a TorchSharp node keeps its
            // saved tensors until the whole graph is freed, so every layer's gate and up would stay alive (and pin
            // the heap between them) until the training step ends. No FedLlm graph is back-propagated twice.
            ctx.Dispose();
        }
    }
}
