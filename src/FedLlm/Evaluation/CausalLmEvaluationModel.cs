using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Evaluation;

/// <summary>
/// <see cref="IEvaluationModel"/> over a causal LM (base weights plus whatever adapter is injected) and its tokenizer.
/// </summary>
/// <remarks>
/// <para><b>Log-likelihood</b> follows lm-evaluation-harness's HFLM: whitespace at the end of the context moves to the
/// start of the continuation; context (with BOS if the tokenizer adds one; EOS if it adds none and the context is
/// empty) and continuation are tokenized separately and concatenated; the sequence is left-truncated to
/// <see cref="MaxLength"/> + 1 tokens and its last token dropped, so the model sees every token that predicts a
/// continuation token. Requests are sorted longest first and right-padded into batches.</para>
/// <para><b>Memory</b>: only the hidden states at continuation positions go through the vocabulary head, so a batch costs
/// (continuation tokens × vocabulary) logits, not (batch × length × vocabulary).</para>
/// <para><b>Generation</b> is <see cref="TextGenerator"/>'s batched KV-cache decoding over prompts sorted by length,
/// each prompt left-truncated to leave room for the new tokens.</para>
/// </remarks>
public sealed class CausalLmEvaluationModel : IEvaluationModel
{
    private readonly LlamaForCausalLM model;
    private readonly ITextTokenizer tokenizer;
    private readonly TextGenerator generator;

    /// <param name="batchSize">Requests per forward pass.</param>
    /// <param name="maxLength">Longest token sequence fed to the model; default the config's max_position_embeddings.</param>
    /// <param name="model">The model (with any adapter loaded) to score; put in eval mode for each call.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    public CausalLmEvaluationModel(LlamaForCausalLM model, ITextTokenizer tokenizer, int batchSize = 8, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        this.model = model;
        this.tokenizer = tokenizer;
        generator = new TextGenerator(model, tokenizer);
        BatchSize = batchSize;
        MaxLength = maxLength ?? model.Config.MaxPositionEmbeddings;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxLength);
    }

    /// <summary>Requests per forward pass.</summary>
    public int BatchSize { get; }

    /// <summary>Longest token sequence fed to the model; longer contexts lose their beginning.</summary>
    public int MaxLength { get; }

    /// <summary>The token ids a request is scored on: (context ids, continuation ids), before truncation.</summary>
    public (IReadOnlyList<int> Context, IReadOnlyList<int> Continuation) Encode(LogLikelihoodRequest request)
    {
        string context = request.Context, continuation = request.Continuation;
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var continuationIds = tokenizer.Encode(continuation);
        if (continuationIds.Count == 0) throw new ArgumentException($"the continuation '{request.Continuation}' encodes to no tokens");
        var contextIds = tokenizer.Encode(context).ToList();
        if (tokenizer.BosTokenId is int bos && tokenizer.Encode(context, addSpecialTokens: true) is { Count: > 0 } special && special[0] == bos)
            contextIds.Insert(0, bos);
        if (contextIds.Count == 0)
        {
            // Nothing to condition on: lm-eval uses the end-of-text token, which every causal LM has seen before a text.
            int start = tokenizer.EosTokenId ?? tokenizer.BosTokenId
                ?? throw new InvalidOperationException("an empty context needs a BOS or EOS token to condition on");
            contextIds.Add(start);
        }
        return (contextIds, continuationIds);
    }

    /// <inheritdoc/>
    public IReadOnlyList<LogLikelihood> LogLikelihoods(IReadOnlyList<LogLikelihoodRequest> requests, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var prepared = requests.Select((r, i) =>
        {
            var (context, continuation) = Encode(r);
            if (continuation.Count > MaxLength)
                throw new ArgumentException($"request {i}: the continuation has {continuation.Count} tokens, more than the {MaxLength} the model takes");
            var whole = context.Concat(continuation).ToList();
            var window = whole.Skip(Math.Max(0, whole.Count - (MaxLength + 1))).ToList();
            return (Index: i, Input: window.Take(window.Count - 1).Select(t => (long)t).ToArray(), Targets: continuation.Select(t => (long)t).ToArray());
        }).OrderByDescending(p => p.Input.Length).ToList();

        var results = new LogLikelihood[requests.Count];
        bool wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        try
        {
            foreach (var batch in prepared.Chunk(BatchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                foreach (var (index, value) in ScoreBatch(batch.Select(b => (b.Input, b.Targets)).ToList()).Select((v, k) => (batch[k].Index, v)))
                    results[index] = value;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return results;
    }

    List<LogLikelihood> ScoreBatch(IReadOnlyList<(long[] Input, long[] Targets)> batch)
    {
        int B = batch.Count, T = batch.Max(b => b.Input.Length);
        long pad = tokenizer.PadTokenId ?? tokenizer.EosTokenId ?? 0;
        var ids = new long[B * T];
        var mask = new long[B * T];
        var rows = new List<long>();        // flat (b·T + t) index of each position that predicts a continuation token
        var targets = new List<long>();
        for (int b = 0; b < B; b++)
        {
            var (input, cont) = batch[b];
            for (int t = 0; t < T; t++)
            {
                ids[b * T + t] = t < input.Length ? input[t] : pad; // right padding: real tokens keep positions 0..L-1
                mask[b * T + t] = t < input.Length ? 1 : 0;
            }
            // Position t predicts token t+1, so the continuation's k tokens are predicted at L-k .. L-1.
            for (int k = 0; k < cont.Length; k++)
            {
                rows.Add(b * T + input.Length - cont.Length + k);
                targets.Add(cont[k]);
            }
        }
        var inputIds = tensor(ids, new long[] { B, T }, device: model.Device);
        var attention = tensor(mask, new long[] { B, T }, device: model.Device);
        var hidden = model.HiddenStates(inputIds, attention);                              // (B, T, H)
        var picked = hidden.reshape(B * T, -1).index_select(0, tensor(rows.ToArray(), device: model.Device)); // (N, H)
        var logProbs = nn.functional.log_softmax(model.Head(picked).to(ScalarType.Float32), 1); // (N, V)
        var targetIds = tensor(targets.ToArray(), device: model.Device);
        var tokenLogProbs = logProbs.gather(1, targetIds.unsqueeze(1)).squeeze(1).to(ScalarType.Float64).cpu().data<double>().ToArray();
        var greedy = logProbs.argmax(1).eq(targetIds).cpu().data<bool>().ToArray();

        var output = new List<LogLikelihood>(B);
        int offset = 0;
        foreach (var (_, cont) in batch)
        {
            double sum = 0;
            bool allGreedy = true;
            for (int k = 0; k < cont.Length; k++) { sum += tokenLogProbs[offset + k]; allGreedy &= greedy[offset + k]; }
            output.Add(new LogLikelihood(sum, allGreedy, cont.Length));
            offset += cont.Length;
        }
        return output;
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The generation budget leaves no room for a prompt in <see cref="MaxLength"/>
    /// positions.</exception>
    public IReadOnlyList<string> Generate(IReadOnlyList<string> prompts, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        int budget = MaxLength - options.MaxNewTokens;
        if (budget <= 0) throw new ArgumentException($"max new tokens {options.MaxNewTokens} leave no room for a prompt in {MaxLength} positions");
        var encoded = prompts.Select(p =>
        {
            var ids = tokenizer.Encode(p, addSpecialTokens: true);
            return ids.Skip(Math.Max(0, ids.Count - budget)).Select(i => (long)i).ToArray(); // keep the end: the question
        }).ToList();
        var order = Enumerable.Range(0, prompts.Count).OrderByDescending(i => encoded[i].Length).ToList();
        var outputs = new string[prompts.Count];
        foreach (var batch in order.Chunk(BatchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var generated = generator.GenerateIds(batch.Select(i => encoded[i]).ToList(), options);
            for (int k = 0; k < batch.Length; k++)
                outputs[batch[k]] = CutAtStop(tokenizer.Decode(generated[k].Select(i => (int)i)), options.StopStrings);
        }
        return outputs;
    }

    static string CutAtStop(string text, IReadOnlyList<string> stops)
    {
        int cut = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        return cut >= 0 ? text[..cut] : text;
    }
}
