using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// How <see cref="Modeling.ModelLoader"/> builds the frozen base: the storage of the seven decoder projections
/// (<see cref="Precision"/>) and the dtype of activations, embeddings, norms and head (<see cref="ComputeDtype"/>).
/// </summary>
/// <remarks>
/// int8 and NF4 compute in bfloat16 by default, as QLoRA does (bnb_4bit_compute_dtype = bfloat16) and as bitsandbytes
/// leaves embeddings in 16 bits: a float32 embedding of a 128k vocabulary alone would be 1 GB of a 1B model.
/// Set <see cref="ComputeDtype"/> to float32 to isolate the quantisation error (the tests do).
/// LoRA adapters, their gradients and optimizer state are float32 in every case.
/// </remarks>
public sealed record BaseWeights(BasePrecision Precision)
{
    /// <summary>Dense float32 throughout: the default, and the reference the quantised bases are compared
    /// with.</summary>
    public static BaseWeights Fp32 { get; } = new(BasePrecision.Fp32);

    /// <summary>The dtype of activations, embeddings, norms, the head and the base projections' matmuls: float32 for an
    /// fp32 base, bfloat16 otherwise.</summary>
    public ScalarType ComputeDtype { get; init; } = Precision == BasePrecision.Fp32 ? ScalarType.Float32 : ScalarType.BFloat16;

    /// <summary>NF4 only: quantise the block scales again (8 bits in blocks of 256); QLoRA's default.</summary>
    public bool DoubleQuant { get; init; } = true;

    /// <param name="what">Names the setting in the error message (default the CLI flag).</param>
    /// <param name="text">fp32, bf16, int8 or nf4 (float32 and bfloat16 too), case-insensitive.</param>
    public static BaseWeights Parse(string text, string what = "--base-dtype") => new(BasePrecisionNames.Parse(text, what));

    /// <summary>The factory for the decoder projections: dense for fp32/bf16, empty quantised layers the loader fills.</summary>
    public FrozenLinearFactory LayerFactory => Precision switch
    {
        BasePrecision.Int8 => (i, o, bias, dtype, device) => new Int8Linear(i, o, bias, dtype, device),
        BasePrecision.Nf4 => (i, o, bias, dtype, device) => new Nf4Linear(i, o, bias, dtype, device, DoubleQuant),
        _ => DenseLinear.Create,
    };

    /// <summary>The precision's name, with the compute dtype when it is not the usual one (e.g. "nf4 (compute
    /// Float32)").</summary>
    public override string ToString() => Precision == BasePrecision.Fp32 || (Precision == BasePrecision.Bf16 && ComputeDtype == ScalarType.BFloat16)
        ? Precision.Name()
        : $"{Precision.Name()} (compute {ComputeDtype})";
}
