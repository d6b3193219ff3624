using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>A frozen projection stored as int8 codes with one float32 scale per output row (<see cref="Int8RowwiseQuantizer"/>).</summary>
public sealed class Int8Linear : QuantizedLinear
{
    private Tensor? weight_codes;  // int8 [out, in]
    private Tensor? weight_scales; // float32 [out, 1]

    /// <summary>An empty int8 layer; <see cref="QuantizedLinear.LoadWeight"/> stores the weight. Computes in
    /// <paramref name="computeDtype"/>.</summary>
    public Int8Linear(long inFeatures, long outFeatures, bool hasBias, ScalarType computeDtype, Device? device = null)
        : base(nameof(Int8Linear), inFeatures, outFeatures, hasBias, computeDtype, device)
    {
        RegisterComponents();
    }

    /// <inheritdoc/>
    protected override void StoreQuantized(Tensor weight)
    {
        (weight_codes, weight_scales) = Int8RowwiseQuantizer.Quantize(weight);
        register_buffer(nameof(weight_codes), weight_codes);
        register_buffer(nameof(weight_scales), weight_scales);
    }

    /// <inheritdoc/>
    protected override Tensor Dequantize(ScalarType dtype) => Int8RowwiseQuantizer.Dequantize(weight_codes!, weight_scales!, dtype);

    /// <inheritdoc/>
    public override long WeightBytes => weight_codes is null ? 0 : weight_codes.NumberOfElements + weight_scales!.NumberOfElements * 4;
}
