using System.Diagnostics;
using System.Globalization;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Times the single-row products of a batch-1 decode step on the SmolLM-135M shapes, one way at a time: whether
/// libtorch's product for one row (M = 1) uses every intra-op thread, and which layouts or splits of the weight do.
/// A diagnosis tool for the decode benchmark; prints one line per variant.
/// </summary>
public static class GemvProbe
{
    public const string Usage = "gemv [--threads 1,2] [--calls 200] [--rows 1] [--precision fp32|bf16]";

    public static int Run(IReadOnlyList<string> arguments)
    {
        var threads = BenchArguments.String(arguments, "--threads", "1,2").Split(',').Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToArray();
        int calls = BenchArguments.Int(arguments, "--calls", 200);
        int rows = BenchArguments.Int(arguments, "--rows", 1);
        var dtype = BenchArguments.String(arguments, "--precision", "fp32") == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var _ = no_grad();
        var shapes = new (string Name, long Out, long In)[] { ("gate [1536×576]", 1536, 576), ("q [576×576]", 576, 576), ("down [576×1536]", 576, 1536), ("head [49152×576]", 49152, 576) };
        foreach (int n in threads)
        {
            set_num_threads(n);
            foreach (var (name, outFeatures, inFeatures) in shapes)
            {
                // As many copies as make 400 MB, used in turn, so each call streams its weight from memory as a decode
                // step does (one copy would stay in the cache and measure the cache).
                long elements = outFeatures * inFeatures;
                int copies = (int)Math.Max(1, Math.Ceiling(400e6 / (elements * 4.0)));
                using var scope = NewDisposeScope();
                var w = Enumerable.Range(0, copies).Select(_ => randn(outFeatures, inFeatures).to(dtype)).ToArray();            // (out, in)
                var wt = w.Select(m => m.t().contiguous()).ToArray();                                                            // (in, out)
                var wHalves = w.Select(m => m.view(2, outFeatures / 2, inFeatures)).ToArray();                                   // (2, out/2, in)
                var wtHalves = wt.Select(m => m.view(inFeatures, 2, outFeatures / 2).permute(1, 0, 2).contiguous()).ToArray();   // (2, in, out/2)
                var x = randn(rows, inFeatures).to(dtype);                                                                        // (M, in)
                var xColumns = x.t().unsqueeze(0).expand(2, inFeatures, rows);                                                   // (2, in, M)
                var xRows = x.unsqueeze(0).expand(2, rows, inFeatures);                                                          // (2, M, in)
                var xt = x.t();                                                                                                  // (in, M)
                double bytes = elements * w[0].ElementSize;
                int next = 0;
                Tensor Pick(Tensor[] set) => set[next++ % set.Length];
                Report(n, name, "linear(x, W)", bytes, calls, () => nn.functional.linear(x, Pick(w)));
                Report(n, name, "x.mm(Wt), Wt (in, out)", bytes, calls, () => x.mm(Pick(wt)));
                Report(n, name, "W.mm(xT)", bytes, calls, () => Pick(w).mm(xt));
                Report(n, name, "bmm, W in 2 row halves", bytes, calls, () => Pick(wHalves).bmm(xColumns));
                Report(n, name, "bmm, Wt in 2 col halves", bytes, calls, () => xRows.bmm(Pick(wtHalves)));
                Report(n, name, "DecodeLinear", bytes, calls, () => FedLlm.Quantization.DecodeLinear.Forward(x, Pick(w)));
                if (rows == 1)
                {
                    var xVector = x.squeeze(0);                                                                                  // (in)
                    Report(n, name, "mv(W, x)", bytes, calls, () => Pick(w).mv(xVector));
                }
            }
        }
        return 0;
    }

    static void Report(int threads, string shape, string variant, double bytes, int calls, Func<Tensor> product)
    {
        for (int i = 0; i < 10; i++) product().Dispose();
        var times = new double[calls];
        for (int i = 0; i < calls; i++)
        {
            var clock = Stopwatch.StartNew();
            product().Dispose();
            times[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        double median = times[calls / 2], best = times[0];
        Console.WriteLine($"threads {threads} | {shape,-18} | {variant,-24} | median {median * 1e6,8:F1} µs ({bytes / median / 1e9,5:F1} GB/s) | best {best * 1e6,8:F1} µs ({bytes / best / 1e9,5:F1} GB/s)");
    }
}
