using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Generation;

/// <summary>
/// Batched text generation with a KV cache: prompts are left-padded, prefilled in one pass, then decoded one token per
/// step; a sequence stops at an EOS id, a stop string or the token budget.
/// </summary>
public sealed class TextGenerator(LlamaForCausalLM model, ITextTokenizer tokenizer)
{
    /// <summary>Token ids that end a sequence: the tokenizer's EOS and the model config's eos_token_id(s).</summary>
    public IReadOnlySet<long> EosIds { get; } = model.Config.EosTokenIds.Select(i => (long)i)
        .Concat(tokenizer.EosTokenId is { } e ? new[] { (long)e } : Array.Empty<long>()).ToHashSet();

    /// <summary>Generates a continuation of each prompt (prompt text is encoded with the tokenizer's special tokens).</summary>
    public IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, GenerationOptions options)
    {
        var encoded = prompts.Select(p => tokenizer.Encode(p, addSpecialTokens: true).Select(i => (long)i).ToArray()).ToList();
        var generated = GenerateIds(encoded, options);
        return generated.Select(ids => Finish(tokenizer.Decode(ids.Select(i => (int)i)), options.StopStrings)).ToList();
    }

    /// <summary>Generates token ids after each prompt (ids only, EOS excluded).</summary>
    public IReadOnlyList<IReadOnlyList<long>> GenerateIds(IReadOnlyList<long[]> prompts, GenerationOptions options)
    {
        options.Validate();
        if (prompts.Count == 0) return Array.Empty<IReadOnlyList<long>>();
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("a prompt encodes to no tokens; give the tokenizer a BOS or a non-empty prompt");
        using var noGrad = no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            return Decode(prompts, options);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    List<IReadOnlyList<long>> Decode(IReadOnlyList<long[]> prompts, GenerationOptions options)
    {
        int batch = prompts.Count;
        int longest = prompts.Max(p => p.Length);
        long pad = tokenizer.PadTokenId ?? EosIds.FirstOrDefault();
        var ids = new long[batch * longest];
        var mask = new long[batch * longest];
        for (int b = 0; b < batch; b++)
        {
            int offset = longest - prompts[b].Length; // left padding keeps every row's last token at the same column
            for (int t = 0; t < longest; t++)
            {
                ids[b * longest + t] = t < offset ? pad : prompts[b][t - offset];
                mask[b * longest + t] = t < offset ? 0 : 1;
            }
        }
        var outputs = Enumerable.Range(0, batch).Select(_ => new List<long>()).ToList();
        var finished = new bool[batch];
        var device = model.Device;
        // Sampling draws where the logits are; the generator must belong to that device.
        using var generator = new Generator((ulong)options.Seed, device);
        using var cache = new KvCache(model.Config, batch, longest + options.MaxNewTokens, model.Dtype, model.Device);

        var attention = tensor(mask, new long[] { batch, longest }, device: device);
        var input = tensor(ids, new long[] { batch, longest }, device: device);
        var positions = attention.cumsum(1).sub(Runtime.Scalars.IntegerOne).clamp_min(Runtime.Scalars.IntegerZero);
        try
        {
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                using var scope = NewDisposeScope();
                using var threads = model.BeginDecodeStep(input);                        // libtorch's ops on this thread alone
                var last = model.LastLogits(input, attention, positions, cache);          // (B, V)
                // NaN logits (a NaN weight, an overflow) would make argmax pick token 0 and sampling fail obscurely.
                if (!isfinite(last).all().item<bool>())
                    throw new InvalidOperationException($"generation step {step + 1}: the model produced non-finite logits (NaN or infinity); " +
                        "its weights or adapter hold non-finite values or overflow in this precision");
                var next = Sampling.NextTokens(last, options, generator);                 // (B)
                var chosen = next.data<long>().ToArray();
                for (int b = 0; b < batch; b++)
                {
                    if (finished[b]) continue;
                    if (EosIds.Contains(chosen[b])) { finished[b] = true; continue; }
                    outputs[b].Add(chosen[b]);
                    if (options.StopStrings.Count > 0 && HasStopString(outputs[b], options.StopStrings)) finished[b] = true;
                }
                if (finished.All(f => f)) break;
                var nextInput = tensor(chosen.Select((c, b) => finished[b] ? pad : c).ToArray(), new long[] { batch, 1 }, device: device);
                var lastPositions = positions.narrow(1, positions.shape[1] - 1, 1).add(Runtime.Scalars.IntegerOne, Runtime.Scalars.IntegerOne);
                var newAttention = cat(new[] { attention, ones(batch, 1, dtype: ScalarType.Int64, device: device) }, 1);
                input.Dispose(); positions.Dispose(); attention.Dispose();
                input = nextInput.MoveToOuterDisposeScope();
                positions = lastPositions.MoveToOuterDisposeScope();
                attention = newAttention.MoveToOuterDisposeScope();
            }
        }
        finally
        {
            input.Dispose(); positions.Dispose(); attention.Dispose();
        }
        return outputs.Select(o => (IReadOnlyList<long>)o).ToList();
    }

    bool HasStopString(List<long> ids, IReadOnlyList<string> stops)
    {
        // Only the tail can contain a stop string that the previous step did not; decode a window, not everything.
        var tail = ids.Skip(Math.Max(0, ids.Count - 16)).Select(i => (int)i);
        string text = tokenizer.Decode(tail);
        return stops.Any(s => text.Contains(s, StringComparison.Ordinal));
    }

    static string Finish(string text, IReadOnlyList<string> stops)
    {
        int cut = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        return cut >= 0 ? text[..cut] : text;
    }
}
