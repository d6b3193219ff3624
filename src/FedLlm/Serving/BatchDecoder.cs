using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Serving;

/// <summary>One sequence of a batch and where its text goes.</summary>
public sealed record BatchEntry(SequenceRequest Request, ISequenceObserver Observer);

/// <summary>Decodes a batch of sequences to their ends; the engine's worker calls it one batch at a time.</summary>
public interface IBatchDecoder
{
    /// <summary>Decodes every entry of <paramref name="batch"/> until it stops, reporting text and the end to each
    /// entry's observer; an entry whose observer is abandoned stops early.</summary>
    void Decode(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken = default);
}

/// <summary>
/// Static batching with one KV cache for the batch: prompts are left-padded and prefilled in one pass, then every
/// sequence gets one token per step until each has stopped. Rows may use different adapters (routed through
/// <see cref="AdapterBank.Routing"/>) and different sampling settings; each row samples from its own seeded generator,
/// so a sequence's tokens do not depend on what else is in the batch, up to floating-point differences of padding.
/// </summary>
public sealed class BatchDecoder(AdapterBank adapters, ITextTokenizer tokenizer) : IBatchDecoder
{
    private readonly LlamaForCausalLM model = adapters.Model;

    /// <summary>Token ids that end a sequence: the tokenizer's EOS and the model config's eos_token_id(s).</summary>
    public IReadOnlySet<long> EosIds { get; } = adapters.Model.Config.EosTokenIds.Select(i => (long)i)
        .Concat(tokenizer.EosTokenIds.Select(i => (long)i)).ToHashSet();

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">A prompt encodes to no tokens, or an entry's generation options are
    /// invalid.</exception>
    public void Decode(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken = default)
    {
        if (batch.Count == 0) return;
        foreach (var entry in batch)
        {
            entry.Request.Options.Validate();
            if (entry.Request.PromptIds.Length == 0) throw new ArgumentException("a prompt encodes to no tokens");
        }
        using var noGrad = no_grad();
        model.eval();
        adapters.Routing.Route(batch.Select(e => e.Request.AdapterSlot).ToList());
        try
        {
            Run(batch, cancellationToken);
        }
        finally
        {
            adapters.Routing.Clear();
        }
    }

    sealed class Row(BatchEntry entry)
    {
        public BatchEntry Entry { get; } = entry;
        public List<long> Ids { get; } = new();
        public Generator Generator { get; } = new((ulong)entry.Request.Options.Seed);
        public int Emitted { get; set; }
        public bool Finished { get; set; }
    }

    void Run(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken)
    {
        int size = batch.Count;
        var rows = batch.Select(e => new Row(e)).ToArray();
        int longest = batch.Max(e => e.Request.PromptIds.Length);
        int budget = batch.Max(e => e.Request.Options.MaxNewTokens);
        long pad = tokenizer.PadTokenId ?? EosIds.FirstOrDefault();
        var ids = new long[size * longest];
        var mask = new long[size * longest];
        for (int b = 0; b < size; b++)
        {
            var prompt = batch[b].Request.PromptIds;
            int offset = longest - prompt.Length; // left padding keeps every row's last token at the same column
            for (int t = 0; t < longest; t++)
            {
                ids[b * longest + t] = t < offset ? pad : prompt[t - offset];
                mask[b * longest + t] = t < offset ? 0 : 1;
            }
        }
        bool allGreedy = batch.All(e => e.Request.Options.Temperature == 0);
        using var cache = new KvCache(model.Config, size, longest + budget, model.Dtype, model.Device);
        var attention = tensor(mask, new long[] { size, longest });                      // (B, T)
        var input = tensor(ids, new long[] { size, longest });                           // (B, T)
        var positions = attention.cumsum(1).sub(Runtime.Scalars.IntegerOne).clamp_min(Runtime.Scalars.IntegerZero);                          // (B, T)
        try
        {
            for (int step = 0; step < budget; step++)
            {
                using var scope = NewDisposeScope();
                using var threads = model.BeginDecodeStep(input);                        // libtorch's ops on this thread alone
                var last = model.LastLogits(input, attention, positions, cache);         // (B, V)
                var chosen = allGreedy ? last.argmax(-1).data<long>().ToArray() : SampleRows(last, rows);
                for (int b = 0; b < size; b++) Advance(rows[b], chosen[b], step, cancellationToken);
                if (rows.All(r => r.Finished)) break;
                var nextInput = tensor(chosen.Select((c, b) => rows[b].Finished ? pad : c).ToArray(), new long[] { size, 1 });
                var lastPositions = positions.narrow(1, positions.shape[1] - 1, 1).add(Runtime.Scalars.IntegerOne, Runtime.Scalars.IntegerOne);
                var newAttention = cat(new[] { attention, ones(size, 1, dtype: ScalarType.Int64) }, 1);
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
    }

    static long[] SampleRows(Tensor last, Row[] rows)
    {
        var chosen = new long[rows.Length];
        for (int b = 0; b < rows.Length; b++)
        {
            if (rows[b].Finished) continue;
            using var row = last.narrow(0, b, 1);                                        // (1, V)
            using var next = Sampling.NextTokens(row, rows[b].Entry.Request.Options, rows[b].Generator);
            chosen[b] = next.item<long>();
        }
        return chosen;
    }

    void Advance(Row row, long token, int step, CancellationToken cancellationToken)
    {
        if (row.Finished) return;
        var options = row.Entry.Request.Options;
        if (cancellationToken.IsCancellationRequested || row.Entry.Observer.Abandoned) { Finish(row, FinishReason.Stop, emitRest: false); return; }
        if (EosIds.Contains(token)) { Finish(row, FinishReason.Stop); return; }
        row.Ids.Add(token);
        string text = tokenizer.Decode(row.Ids.Select(i => (int)i));
        int stop = StopStringText.FirstStop(text, options.StopStrings);
        if (stop >= 0)
        {
            Emit(row, text[..stop]);
            row.Finished = true;
            row.Entry.Observer.OnFinished(FinishReason.Stop, row.Ids.Count);
            return;
        }
        if (row.Ids.Count >= options.MaxNewTokens) { Emit(row, text); row.Finished = true; row.Entry.Observer.OnFinished(FinishReason.Length, row.Ids.Count); return; }
        Emit(row, text[..StopStringText.SafeLength(text, options.StopStrings)]);
    }

    void Finish(Row row, FinishReason reason, bool emitRest = true)
    {
        if (emitRest) Emit(row, tokenizer.Decode(row.Ids.Select(i => (int)i)));
        row.Finished = true;
        row.Entry.Observer.OnFinished(reason, row.Ids.Count);
    }

    static void Emit(Row row, string text)
    {
        if (text.Length <= row.Emitted) return;
        row.Entry.Observer.OnText(text[row.Emitted..]);
        row.Emitted = text.Length;
    }
}
