using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// Weight-only int8 with one absmax scale per output channel (row), the weight format of LLM.int8()
/// (Dettmers et al., 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale", vector-wise quantisation).
/// </summary>
/// <remarks>
/// scale_r = max_j |W_rj| / 127 (1 for an all-zero row, whose codes are then 0), code = round(W / scale) clamped to
/// ±127 (round half to even, as torch.round), W ≈ code · scale. The arithmetic is in float32 whatever the input dtype,
/// in the same order as tests/reference/quant/make_quant_golden.py, so codes and scales equal the reference bit for bit.
/// </remarks>
public static class Int8RowwiseQuantizer
{
    /// <summary>Quantises a [out, in] weight; returns int8 codes [out, in] and float32 scales [out, 1], owned by the caller.</summary>
    public static (Tensor Codes, Tensor Scales) Quantize(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException($"int8 quantisation takes a [out, in] weight, not shape [{string.Join(", ", weight.shape)}]", nameof(weight));
        // One pass over the weight's memory (bitwise the same codes and scales as the tensor code below).
        if (CpuQuantizeKernels.Supports(weight)) return CpuQuantizeKernels.Int8(weight);
        return QuantizeWithTensors(weight);
    }

    /// <summary>The libtorch formulation: any device and dtype, and the reference the CPU kernel must equal bit for bit.</summary>
    internal static (Tensor Codes, Tensor Scales) QuantizeWithTensors(Tensor weight)
    {
        using var scope = NewDisposeScope();
        var w = weight.to(ScalarType.Float32);
        var absmax = w.abs().amax(new long[] { 1 }, keepdim: true);              // (out, 1)
        var scales = where(absmax.eq(0), ones_like(absmax, device: absmax.device), absmax / 127.0);    // (out, 1)
        var codes = (w / scales).round_().clamp_(-127, 127).to(ScalarType.Int8); // (out, in)
        return (codes.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope());
    }

    /// <summary>code · scale in float32, then cast to <paramref name="dtype"/>.</summary>
    public static Tensor Dequantize(Tensor codes, Tensor scales, ScalarType dtype)
    {
        var product = codes.to(ScalarType.Float32).mul_(scales); // mul_ returns the same tensor: one allocation
        if (dtype == ScalarType.Float32) return product;
        using (product) return product.to(dtype);
    }
}
