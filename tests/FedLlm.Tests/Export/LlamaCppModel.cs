using LLama;
using LLama.Common;
using LLama.Native;

namespace FedLlm.Tests.Export;

/// <summary>
/// A GGUF file loaded by llama.cpp (through LLamaSharp): tokenization, greedy decoding and logits over token ids, the
/// independent implementation the exported files are checked against.
/// </summary>
/// <remarks>
/// The KV cache is kept in F32 (llama.cpp's default is F16) and flash attention is off (ggml's CPU kernel rounds
/// attention to F16; with it on, F32 logits differed from FedLlm's by up to 1e-2), so an F32 export is compared with
/// FedLlm at float32 throughout; one thread keeps llama.cpp's sums in a fixed order.
/// </remarks>
internal sealed class LlamaCppModel : IDisposable
{
    static readonly object NativeSetup = new();
    static bool configured;

    readonly LLamaWeights weights;
    readonly LLamaContext context;
    readonly int contextSize;

    public LlamaCppModel(string ggufPath, int contextSize = 512)
    {
        lock (NativeSetup)
        {
            if (!configured)
            {
                // Only warnings and errors: llama.cpp logs every loaded tensor at info level.
                NativeLibraryConfig.All.WithLogCallback((level, message) =>
                {
                    if (level is LLamaLogLevel.Error or LLamaLogLevel.Warning) Console.Error.Write(message);
                });
                configured = true;
            }
        }
        this.contextSize = contextSize;
        var parameters = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            Threads = 1,
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        weights = LLamaWeights.LoadFromFile(parameters);
        context = weights.CreateContext(parameters);
    }

    public int VocabSize => weights.Vocab.Count;

    /// <summary>llama.cpp's tokenization; <paramref name="addBos"/> as the GGUF's add_bos_token says, special tokens parsed.</summary>
    public int[] Tokenize(string text, bool addBos) => context.Tokenize(text, addBos, special: true).Select(t => (int)t).ToArray();

    /// <summary>Logits (one row of vocabulary size per position) of <paramref name="ids"/> evaluated in one batch from an empty cache.</summary>
    public float[][] Logits(IReadOnlyList<int> ids)
    {
        if (ids.Count > contextSize) throw new ArgumentException("longer than the context");
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < ids.Count; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, logits: true);
        Check(context.Decode(batch));
        return Enumerable.Range(0, ids.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/>: prefill, then one token per step through the KV cache, stopping at <paramref name="eos"/>.</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int maxNewTokens, IReadOnlySet<long> eos)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Count; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, logits: i == prompt.Count - 1);
        Check(context.Decode(batch));
        var output = new List<int>();
        for (int step = 0; step < maxNewTokens; step++)
        {
            int next = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            if (eos.Contains(next)) break;
            output.Add(next);
            batch.Clear();
            batch.Add(next, prompt.Count + step, LLamaSeqId.Zero, logits: true);
            Check(context.Decode(batch));
        }
        return output;
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
    }

    public void Dispose()
    {
        context.Dispose();
        weights.Dispose();
    }
}
