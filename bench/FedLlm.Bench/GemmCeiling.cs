using System.Diagnostics;
using FedLlm.Modeling;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// The measured matmul ceiling of a dtype on this machine for the model's own shapes: x (tokens × in) · Wᵀ (in × out)
/// for each of the seven projections (×layers) and the head, best of <c>repeats</c> timings each, combined as
/// Σ FLOPs / Σ time (FLOP-weighted), so the ceiling is what a step made only of these GEMMs would reach.
/// </summary>
public static class GemmCeiling
{
    public static double FlopsPerSecond(LlamaConfig c, long tokens, ScalarType dtype, int repeats = 3)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, f = c.IntermediateSize;
        var shapes = new (long In, long Out, double Count)[]
        {
            (h, q, c.NumHiddenLayers), (h, kv, 2 * c.NumHiddenLayers), (q, h, c.NumHiddenLayers),
            (h, f, 2 * c.NumHiddenLayers), (f, h, c.NumHiddenLayers), (h, Math.Min(c.VocabSize, 8192), c.VocabSize / (double)Math.Min(c.VocabSize, 8192)),
        };
        var g = new TorchSharp.torch.Generator(1);
        double flops = 0, seconds = 0;
        foreach (var (inF, outF, count) in shapes)
        {
            using var scope = NewDisposeScope();
            var x = randn(new[] { tokens, inF }, generator: g).to(dtype);
            var w = randn(new[] { outF, inF }, generator: g).to(dtype);
            using (nn.functional.linear(x, w)) { } // warm-up: first call pays for packing buffers / JIT kernels
            double best = double.MaxValue;
            for (int r = 0; r < repeats; r++)
            {
                var watch = Stopwatch.StartNew();
                using (nn.functional.linear(x, w)) { }
                best = Math.Min(best, watch.Elapsed.TotalSeconds);
            }
            flops += count * 2.0 * tokens * inF * outF;
            seconds += count * best;
        }
        return flops / seconds;
    }
}
