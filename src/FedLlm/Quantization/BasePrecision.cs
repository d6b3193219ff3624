namespace FedLlm.Quantization;

/// <summary>How the frozen base projections are stored and multiplied (<c>--base-dtype</c>, YAML <c>model.base_dtype</c>).</summary>
public enum BasePrecision
{
    /// <summary>float32 weights and matmuls.</summary>
    Fp32,

    /// <summary>bfloat16 weights, activations and matmuls; norms and the loss in float32, LoRA in float32.</summary>
    Bf16,

    /// <summary>int8 weights with a float32 scale per output row (LLM.int8() weight format), dequantised per call.</summary>
    Int8,

    /// <summary>QLoRA's 4-bit NormalFloat, blocks of 64, double-quantised scales, dequantised per call.</summary>
    Nf4,
}

/// <summary>Names of <see cref="BasePrecision"/> as the CLI and YAML spell them.</summary>
public static class BasePrecisionNames
{
    /// <summary>The accepted names, for error messages.</summary>
    public const string Accepted = "fp32, bf16, int8 or nf4";

    /// <summary>Parses fp32 | bf16 | int8 | nf4 (case-insensitive; float32 and bfloat16 too).</summary>
    /// <exception cref="ArgumentException">Anything else; the message lists the accepted names.</exception>
    public static BasePrecision Parse(string text, string what = "--base-dtype") => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" => BasePrecision.Fp32,
        "bf16" or "bfloat16" => BasePrecision.Bf16,
        "int8" => BasePrecision.Int8,
        "nf4" => BasePrecision.Nf4,
        _ => throw new ArgumentException($"{what} '{text}' is not one of {Accepted}"),
    };

    /// <summary>The lower-case name (fp32, bf16, int8, nf4) that <see cref="Parse"/> reads back.</summary>
    public static string Name(this BasePrecision precision) => precision.ToString().ToLowerInvariant();
}
