using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>A frozen projection stored in QLoRA's NF4 (blocks of 64, optionally double-quantised scales; <see cref="Nf4Quantizer"/>).</summary>
public sealed class Nf4Linear : QuantizedLinear
{
    private readonly bool doubleQuant;
    private Nf4Tensor? quantized;

    /// <summary>An empty NF4 layer; <see cref="QuantizedLinear.LoadWeight"/> stores the weight. Computes in
    /// <paramref name="computeDtype"/>; <paramref name="doubleQuant"/> quantises the block scales again, as QLoRA
    /// does.</summary>
    public Nf4Linear(long inFeatures, long outFeatures, bool hasBias, ScalarType computeDtype, Device? device = null, bool doubleQuant = true)
        : base(nameof(Nf4Linear), inFeatures, outFeatures, hasBias, computeDtype, device)
    {
        this.doubleQuant = doubleQuant;
        RegisterComponents();
    }

    /// <summary>The stored weight, or null until it is loaded.</summary>
    public Nf4Tensor? Quantized => quantized;

    /// <inheritdoc/>
    protected override void StoreQuantized(Tensor weight)
    {
        quantized = Nf4Quantizer.Quantize(weight, doubleQuant);
        register_buffer("weight_nf4", quantized.Packed);
        if (quantized.QuantizedAbsmax is { } q)
        {
            register_buffer("weight_absmax_codes", q.Codes);
            register_buffer("weight_absmax_scales", q.Absmax);
            register_buffer("weight_absmax_offset", q.Offset);
        }
        else register_buffer("weight_absmax", quantized.Absmax!);
    }

    /// <inheritdoc/>
    protected override Tensor Dequantize(ScalarType dtype) => quantized!.Dequantize(dtype);

    /// <inheritdoc/>
    public override long WeightBytes => quantized?.Bytes ?? 0;

    /// <summary>Frees the stored codes and scales with the module.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing) quantized?.Dispose();
        base.Dispose(disposing);
    }
}
