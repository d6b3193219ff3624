using static TorchSharp.torch;

namespace FedLlm.Runtime;

/// <summary>Small conversions of TorchSharp tensors.</summary>
public static class TensorExtensions
{
    /// <summary>The value of a one-element tensor of any floating dtype as a double (item&lt;T&gt; demands the exact type).</summary>
    public static double ToScalarDouble(this Tensor scalar)
    {
        using var wide = scalar.to(ScalarType.Float64);
        return wide.item<double>();
    }
}
