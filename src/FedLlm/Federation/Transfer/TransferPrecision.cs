namespace FedLlm.Federation.Transfer;

/// <summary>The number format adapter tensors travel in; the receiver always gets float32 back.</summary>
public enum TransferPrecision
{
    /// <summary>Raw IEEE float32, little-endian: lossless.</summary>
    Float32,
    /// <summary>bfloat16 (8-bit exponent, 7-bit mantissa), rounded to nearest even as torch's <c>.to(torch.bfloat16)</c>.</summary>
    BFloat16,
    /// <summary>IEEE half (5-bit exponent, 10-bit mantissa), rounded to nearest even as torch's <c>.to(torch.float16)</c>;
    /// magnitudes above 65504 become ±Inf, which the server's validator then rejects.</summary>
    Float16,
    /// <summary>Linear absmax 8-bit codes per block, with one float32 scale per block (see <see cref="TensorCodec"/>).</summary>
    Int8Blockwise,
}
