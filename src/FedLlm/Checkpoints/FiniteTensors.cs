using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

/// <summary>A tensor with NaN or infinite values where only finite ones make sense (model weights, adapters, optimizer
/// state); the message names the tensor and the file.</summary>
public sealed class NonFiniteTensorException(string file, string tensor, long count, string action)
    : Exception($"{file}: tensor '{tensor}' holds {count} non-finite value(s) (NaN or infinity); refusing to {action} it")
{
    /// <summary>The file the tensor came from or was going to.</summary>
    public string File { get; } = file;

    /// <summary>The offending tensor's name.</summary>
    public string Tensor { get; } = tensor;
}

/// <summary>Finiteness checks for tensors read from or written to disk.</summary>
public static class FiniteTensors
{
    /// <summary>True when every element is finite (always for integer and boolean tensors).</summary>
    /// <remarks>A float64 sum is finite exactly when every element is: NaN and ±∞ propagate through it, and finite fp32 or
    /// bf16 values cannot overflow a float64 accumulator. That takes one pass and no tensor-sized mask.</remarks>
    public static bool AllFinite(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_floating_point() || tensor.numel() == 0) return true;
        using var noGrad = no_grad();
        using var sum = tensor.sum(ScalarType.Float64);
        return double.IsFinite(sum.item<double>());
    }

    /// <summary>Throws <see cref="NonFiniteTensorException"/> unless every element of <paramref name="tensor"/> is finite.</summary>
    /// <param name="action">What the caller refuses to do, e.g. "load" or "write".</param>
    /// <param name="tensor">The tensor to check.</param>
    /// <param name="name">Its name, for the message.</param>
    /// <param name="file">The file it belongs to, for the message.</param>
    public static void Require(Tensor tensor, string name, string file, string action)
    {
        if (AllFinite(tensor)) return;
        using var noGrad = no_grad();
        using var finite = tensor.isfinite();
        using var bad = finite.logical_not().sum();
        throw new NonFiniteTensorException(file, name, bad.item<long>(), action);
    }
}
