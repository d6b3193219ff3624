using static TorchSharp.torch;

namespace FedLlm.Quantization;

/// <summary>
/// y = x Wᵀ + b for a single input row, the product of every projection in a batch-1 decode step, computed so that
/// libtorch streams the weight on all its intra-op threads.
/// </summary>
/// <remarks>
/// For one row (M = 1) libtorch's <c>linear</c> ends in a matrix-vector kernel that runs on one thread, whatever
/// <c>torch.set_num_threads</c> says; a decode step reads every weight once per token, so it is bound by what one
/// core streams from memory. <c>bmm</c> over pieces of W's output rows, viewed as a batch
/// (P, out/P, in) × (P, in, 1), hands each piece to a thread of its own and keeps W in place: the view costs nothing,
/// and the (P, out/P, 1) result is, read in order, the (out) output row. `FedLlm.Bench gemv` times the variants.
/// Rows are only regrouped, each output is still one dot product over the whole input row, so results agree with
/// <c>linear</c> to rounding (not bit for bit: the kernels differ).
/// </remarks>
public static class SingleRowLinear
{
    /// <summary>x Wᵀ + b: split over W's output rows when <paramref name="input"/> is one row, no gradient is being
    /// recorded and the rows divide evenly; <c>nn.functional.linear</c> otherwise (training, prefill, batches).</summary>
    /// <param name="input">(…, in); one row when its elements number in.</param>
    /// <param name="weight">(out, in), contiguous.</param>
    /// <param name="bias">(out), or null.</param>
    /// <returns>(…, out).</returns>
    public static Tensor Forward(Tensor input, Tensor weight, Tensor? bias = null)
    {
        int pieces = Pieces(input, weight);
        if (pieces < 2) return nn.functional.linear(input, weight, bias);
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        using var split = weight.view(pieces, outFeatures / pieces, inFeatures);     // (P, out/P, in)
        // The column is the row transposed, strides (1, in): built as reshape(1, in, 1) instead (strides (in, 1, 1))
        // MKL gets a leading dimension of 1 and takes a generic kernel, far slower than linear.
        using var row = input.reshape(1, inFeatures);                                // (1, in)
        using var column = row.t();                                                   // (in, 1)
        using var column3 = column.unsqueeze(0);                                      // (1, in, 1)
        using var columns = column3.expand(pieces, inFeatures, 1);                    // (P, in, 1), no copy
        using var product = split.bmm(columns);                                       // (P, out/P, 1)
        var outputShape = input.shape.ToArray();
        outputShape[^1] = outFeatures;
        var output = product.view(outputShape);                                       // (…, out)
        if (bias is not null) output.add_(bias);
        return output;
    }

    /// <summary>How many pieces W's rows are split into: the intra-op thread count (at least 2: the batched kernel is
    /// the faster one even on one thread), lowered until it divides the rows; below 2 means "use linear".</summary>
    static int Pieces(Tensor input, Tensor weight)
    {
        // bf16 stays on linear: oneDNN already runs its single-row product on every thread, and bf16 bmm is slower.
        if (weight.dtype != ScalarType.Float32) return 0;
        if (weight.dim() != 2 || input.NumberOfElements != weight.shape[1] || !weight.is_contiguous()) return 0;
        if (is_grad_enabled() && (input.requires_grad || weight.requires_grad)) return 0;
        long outFeatures = weight.shape[0];
        int pieces = Math.Max(2, get_num_threads());
        while (pieces >= 2 && outFeatures % pieces != 0) pieces--;
        return pieces;
    }
}
