using System.Diagnostics;
using System.Globalization;
using FedLlm.Federation.Transfer;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Bench;

/// <summary>
/// Speed and error of the transfer codecs alone (no network): a Llama-2-7B-shaped LoRA adapter at r 32 on all seven
/// projections (32 layers, 224 tensors, 80 M parameters, 320 MB in fp32) is encoded and decoded in each encoding.
/// MB/s are of the fp32 adapter (what the caller hands in and gets back), so the figures compare with the network
/// target of 500 MB/s. Values are N(0, 0.02²) like a trained adapter's: random mantissas, the worst case for gzip.
/// </summary>
/// <remarks>dotnet run -c Release --project bench/FedLlm.Bench -- codec [--layers 32] [--rank 32] [--repeats 3] [--encodings fp32,int8,...]</remarks>
public static class CodecBenchmark
{
    public static int Run(IReadOnlyList<string> arguments)
    {
        int layers = BenchArguments.Int(arguments, "--layers", 32), rank = BenchArguments.Int(arguments, "--rank", 32), repeats = BenchArguments.Int(arguments, "--repeats", 3);
        var adapter = BenchModels.Llama7BAdapter(layers, rank);
        long fp32Bytes = adapter.Sum(t => t.Tensor.numel() * 4);
        Console.WriteLine($"adapter: {adapter.Count} tensors, {adapter.Sum(t => t.Tensor.numel()):N0} parameters, {fp32Bytes / 1e6:F1} MB fp32; " +
            $"torch threads {get_num_threads()}; best of {repeats}");
        Console.WriteLine("| encoding | payload MB | ratio | encode MB/s | decode MB/s | max abs error | peak RSS GB (cumulative) |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var encodings = BenchArguments.String(arguments, "--encodings", "fp32,bf16,fp16,int8,fp32+gzip,bf16+gzip,int8+gzip").Split(',');
        foreach (var text in encodings)
        {
            var encoding = TransferEncoding.Parse(text);
            double bestEncode = double.MaxValue, bestDecode = double.MaxValue, maxError = 0;
            long payloadBytes = 0;
            for (int r = 0; r < repeats; r++)
            {
                var watch = Stopwatch.StartNew();
                var payloads = adapter.Select(t => TensorCodec.Encode(t.Tensor, encoding)).ToList();
                bestEncode = Math.Min(bestEncode, watch.Elapsed.TotalSeconds);
                payloadBytes = payloads.Sum(p => (long)p.Length);

                watch.Restart();
                var decoded = new List<Tensor>(payloads.Count);
                for (int i = 0; i < payloads.Count; i++) decoded.Add(TensorCodec.Decode(payloads[i], encoding, adapter[i].Tensor.shape));
                bestDecode = Math.Min(bestDecode, watch.Elapsed.TotalSeconds);

                if (r == 0)
                    for (int i = 0; i < decoded.Count; i++)
                        using (var error = (decoded[i] - adapter[i].Tensor).abs().max())
                            maxError = Math.Max(maxError, error.item<float>());
                foreach (var t in decoded) t.Dispose();
                // Payloads are garbage now: collect them so the next repeat's peak RSS is its own, not the GC's backlog.
                payloads.Clear();
                GC.Collect();
                ProcessMemory.ReleaseFreeHeap();
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {text} | {payloadBytes / 1e6:F1} | {(double)payloadBytes / fp32Bytes:F3} | {fp32Bytes / 1e6 / bestEncode:F0} | {fp32Bytes / 1e6 / bestDecode:F0} | {maxError:G3} | {ProcessMemory.PeakRssBytes() / 1e9:F2} |"));
        }
        MeasureValidation(adapter, repeats);
        return 0;
    }

    /// <summary>Time of the server's content check (names, shapes, dtypes, finiteness, norm) of one such update.</summary>
    static void MeasureValidation(List<(string Name, Tensor Tensor)> adapter, int repeats)
    {
        var global = adapter.ToDictionary(t => t.Name, t => t.Tensor);
        var weights = adapter.ToDictionary(t => t.Name, t => (t.Tensor + 0.001f).DetachFromDisposeScope());
        var update = new FedLlm.Federation.ClientUpdate("bench", weights, 1000);
        double best = double.MaxValue;
        FedLlm.Federation.Validation.UpdateVerdict? verdict = null;
        for (int r = 0; r < repeats; r++)
        {
            var watch = Stopwatch.StartNew();
            verdict = FedLlm.Federation.Validation.UpdateValidator.Validate(global, update, new() { MaxUpdateNorm = 1e6 });
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
        }
        long bytes = adapter.Sum(t => t.Tensor.numel() * 4);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"validation of one update: {best:F3} s ({bytes / 1e6 / best:F0} MB/s), {verdict}, norm {verdict!.UpdateNorm:G6} (expected {0.001 * Math.Sqrt(adapter.Sum(t => t.Tensor.numel())):G6})"));
        foreach (var t in weights.Values) t.Dispose();
    }
}
