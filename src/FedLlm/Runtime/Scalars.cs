using TorchSharp;

namespace FedLlm.Runtime;

/// <summary>Scalars that live as long as the process, for libtorch calls that need an explicit alpha.</summary>
/// <remarks>
/// TorchSharp 0.107 hands a Scalar's raw handle to libtorch and frees it in a finalizer, so a temporary Scalar — a
/// double converted implicitly, or the alpha = 1 that <c>a + b</c> and <c>add(t)</c> create inside TorchSharp
/// (<c>a - b</c> makes none) — can be freed by a collection while the native call still reads it (a rare use-after-free; see
/// <c>Training.AdamW.Step</c>). Code on hot or multi-threaded paths passes named Scalars instead: a <c>using</c> local,
/// or one of these, which a static field keeps reachable (c10::Scalar is immutable, so threads may share it).
/// </remarks>
public static class Scalars
{
    /// <summary>1, the alpha of a plain sum: <c>a.add(b, Scalars.One)</c>.</summary>
    public static readonly Scalar One = 1.0.ToScalar();

    /// <summary>The integer 0 (padding in an attention mask, the least position).</summary>
    public static readonly Scalar IntegerZero = 0L.ToScalar();

    /// <summary>The integer 1 (a position step).</summary>
    public static readonly Scalar IntegerOne = 1L.ToScalar();

    /// <summary>−100, the label transformers ignores in the loss.</summary>
    public static readonly Scalar IgnoredLabel = (-100L).ToScalar();

    /// <summary>The int64 range [<paramref name="start"/>, <paramref name="end"/>) on <paramref name="device"/>, its
    /// bounds as named Scalars (torch.arange takes Scalars, which a long would become implicitly).</summary>
    public static torch.Tensor Range(long start, long end, torch.Device device)
    {
        using var first = start.ToScalar();
        using var stop = end.ToScalar();
        return torch.arange(first, stop, torch.ScalarType.Int64, device);
    }
}
