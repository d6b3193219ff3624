using FedLlm.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// y = x Wᵀ + b for the few rows of a decode step (one per sequence), computed so that each weight streams from memory
/// once, on every intra-op thread, instead of through the kernels <c>linear</c> picks for a large batch.
/// </summary>
/// <remarks>
/// A decode step reads every weight once per token, so its products are bound by how fast the weights stream from
/// memory and by how fast the threads sharing a product start and finish. `FedLlm.Bench gemv --rows M` shows
/// libtorch's <c>linear</c> slow in three ways on such inputs: one row (M = 1) ends in a matrix-vector kernel on one
/// thread whatever <c>torch.set_num_threads</c> says; a few rows make MKL copy and repack the whole weight on every
/// call; bf16 weights stream at a fraction of fp32's speed. And every product wakes libtorch's sleeping OpenMP threads.
/// So, for an input with no gradient recorded:
/// <list type="bullet">
/// <item>1 to <see cref="DecodeGemv.MaxRows"/> rows over fp32 weights, or one row over bf16 weights (on a CPU with
/// 256-bit vectors and FMA): <see cref="DecodeGemv"/>, which streams W in place on threads that stay awake between
/// products. A few bf16 rows stay on oneDNN, which is as fast there and widens each weight once, not once per pair of
/// rows.</item>
/// <item>Otherwise, one fp32 row: <c>bmm</c> over pieces of W's output rows viewed as a batch (P, out/P, in) ×
/// (P, in, 1), which hands each piece to a thread of its own; the (P, out/P, 1) result, read in order, is the
/// output row.</item>
/// <item>Up to <see cref="MaxWeightStationaryRows"/> fp32 rows: W xᵀ (out, M), W as the left-hand operand so that MKL
/// streams it instead of repacking it; the small (M, out) transpose of its result is the only copy.</item>
/// </list>
/// Each output is still one dot product over the whole input row, summed in fp32, so results agree with
/// <c>linear</c> to rounding (not bit for bit: the kernels differ). Training (gradients recorded), other dtypes, other
/// devices and larger batches such as a long prefill stay on <c>linear</c>.
/// </remarks>
public static class DecodeLinear
{
    /// <summary>Above this many rows <c>linear</c> is as fast as the weight-stationary product (equal at 128 rows on
    /// the SmolLM shapes, `FedLlm.Bench gemv`), and it is the kernel the rest of the model was checked with.</summary>
    public const int MaxWeightStationaryRows = 64;

    /// <summary>x Wᵀ + b; see the class remarks for which inputs take which kernel.</summary>
    /// <param name="input">(…, in).</param>
    /// <param name="weight">(out, in), contiguous.</param>
    /// <param name="bias">(out), or null.</param>
    /// <returns>(…, out).</returns>
    public static Tensor Forward(Tensor input, Tensor weight, Tensor? bias = null)
    {
        if (!Applies(input, weight)) return nn.functional.linear(input, weight, bias);
        long inFeatures = weight.shape[1];
        long rows = input.NumberOfElements / inFeatures;
        if (DecodeGemv.Takes(rows, weight.dtype)) return Streamed(input, weight, bias, rows);
        if (weight.dtype != ScalarType.Float32) return nn.functional.linear(input, weight, bias);
        if (rows == 1)
        {
            int pieces = Pieces(weight.shape[0]);
            if (pieces >= 2) return RowSplit(input, weight, bias, pieces);
            return nn.functional.linear(input, weight, bias);
        }
        if (rows <= MaxWeightStationaryRows) return WeightStationary(input, weight, bias, rows);
        return nn.functional.linear(input, weight, bias);
    }

    static bool Applies(Tensor input, Tensor weight)
    {
        if (weight.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || input.dtype != weight.dtype) return false;
        if (weight.device_type != DeviceType.CPU || input.device_type != DeviceType.CPU) return false;
        if (weight.dim() != 2 || input.dim() == 0 || input.shape[^1] != weight.shape[1] || !weight.is_contiguous()) return false;
        if (weight.shape[0] > int.MaxValue || weight.shape[1] > int.MaxValue) return false;
        if (input.NumberOfElements == 0) return false;
        return !(is_grad_enabled() && (input.requires_grad || weight.requires_grad));
    }

    /// <summary>The rows <see cref="DecodeGemv.Takes"/>: <see cref="DecodeGemv"/>.</summary>
    static unsafe Tensor Streamed(Tensor input, Tensor weight, Tensor? bias, long rows)
    {
        int outFeatures = (int)weight.shape[0], inFeatures = (int)weight.shape[1];
        bool bf16 = weight.dtype == ScalarType.BFloat16;
        using var x = input.contiguous();
        var output = empty(OutputShape(input, outFeatures), input.dtype, device: input.device);
        fixed (byte* xs = x.bytes)
        fixed (byte* ys = output.bytes)
            DecodeGemv.Multiply(xs, (int)rows, (void*)TensorMemory.Address(weight), bf16, inFeatures, ys, outFeatures, Runtime.DecodeThreading.ProductThreads);
        return WithBias(output, bias);
    }

    /// <summary>One row: W's output rows in <paramref name="pieces"/> pieces, one bmm batch entry each.</summary>
    static Tensor RowSplit(Tensor input, Tensor weight, Tensor? bias, int pieces)
    {
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        using var split = weight.view(pieces, outFeatures / pieces, inFeatures);     // (P, out/P, in)
        // The column is the row transposed, strides (1, in): built as reshape(1, in, 1) instead (strides (in, 1, 1))
        // MKL gets a leading dimension of 1 and takes a generic kernel, far slower than linear.
        using var row = input.reshape(1, inFeatures);                                // (1, in)
        using var column = row.t();                                                   // (in, 1)
        using var column3 = column.unsqueeze(0);                                      // (1, in, 1)
        using var columns = column3.expand(pieces, inFeatures, 1);                    // (P, in, 1), no copy
        using var product = split.bmm(columns);                                       // (P, out/P, 1)
        var output = product.view(OutputShape(input, outFeatures));                   // (…, out)
        return WithBias(output, bias);
    }

    /// <summary>A few rows: (W xᵀ)ᵀ, W as the left-hand operand so that MKL streams it instead of repacking it.</summary>
    static Tensor WeightStationary(Tensor input, Tensor weight, Tensor? bias, long rows)
    {
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        using var flat = input.reshape(rows, inFeatures);                             // (M, in)
        using var columns = flat.t();                                                 // (in, M), strides (1, in)
        using var product = weight.mm(columns);                                       // (out, M)
        using var transposed = product.t();                                           // (M, out), a view
        using var contiguous = transposed.contiguous();                               // (M, out)
        var output = contiguous.view(OutputShape(input, outFeatures));                // (…, out)
        return WithBias(output, bias);
    }

    /// <summary>Adds the bias in place; alpha is a static Scalar, never a temporary a finalizer could free mid-call.</summary>
    static Tensor WithBias(Tensor output, Tensor? bias)
    {
        if (bias is not null) output.add_(bias, Runtime.Scalars.One);
        return output;
    }

    static long[] OutputShape(Tensor input, long outFeatures)
    {
        var shape = input.shape.ToArray();
        shape[^1] = outFeatures;
        return shape;
    }

    /// <summary>How many pieces W's rows are split into for one row: the intra-op thread count (at least 2: the
    /// batched kernel is the faster one even on one thread), lowered until it divides the rows; below 2 means "use
    /// linear".</summary>
    static int Pieces(long outFeatures)
    {
        int pieces = Math.Max(2, get_num_threads());
        while (pieces >= 2 && outFeatures % pieces != 0) pieces--;
        return pieces;
    }
}
