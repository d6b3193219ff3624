using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// The autograd node of a <see cref="QuantizedLinear"/>: saves only the layer, so autograd holds neither the
/// dequantised weight (F.linear would save it for backward: a full-precision copy of the model) nor the input
/// (the weight takes no gradient). Backward dequantises again and returns g·W.
/// </summary>
internal sealed class FrozenLinearFunction : autograd.SingleTensorFunction<FrozenLinearFunction>
{
    const string LayerKey = "layer";

    // The handle of the gradient returned by the previous backward call on this thread. libtorch has taken its own
    // reference by the time the next node runs; without this, our handle would keep every layer's input gradient alive
    // until the training step's dispose scope ends. (Backward of CPU graphs runs on the thread that called backward.)
    [ThreadStatic] static Tensor? previousGradient;

    public override string Name => nameof(FrozenLinearFunction);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var layer = (QuantizedLinear)vars[1];
        ctx.save_data(LayerKey, layer);
        ctx.set_materialize_grads(false);
        return layer.Project(input);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        previousGradient?.Dispose();
        previousGradient = null;
        if (gradOutput is null || gradOutput.IsInvalid) return new List<Tensor> { null!, null! };
        var layer = (QuantizedLinear)ctx.get_data(LayerKey);
        var gradInput = layer.InputGradient(gradOutput);
        gradOutput.Dispose(); // our handle only; libtorch keeps its own
        previousGradient = gradInput;
        return new List<Tensor> { gradInput, null! };
    }
}
