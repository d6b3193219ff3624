using FedLlm.Data.Templates;
using FedLlm.Tokenization;

namespace FedLlm.Data;

/// <summary>
/// Turns an <see cref="InstructionExample"/> into input ids and labels that put the loss on the response and EOS only,
/// as OpenFedLLM does with TRL's DataCollatorForCompletionOnlyLM.
/// </summary>
/// <remarks>
/// <para><b>Where the loss starts.</b> OpenFedLLM tokenizes the whole text and masks every token up to and including the
/// response template's tokens. Searching for those tokens is fragile: the template tokenizes differently alone than after
/// text (hence OpenFedLLM's <c>encode(template)[2:]</c> for Llama 2), and TRL finds the first occurrence, which may be
/// inside the instruction. This builder instead encodes the full text (<see cref="PromptTemplate.FormatPrompt"/> +
/// <see cref="PromptTemplate.FormatCompletion"/>) and the prompt alone, and puts the boundary at their common token prefix.
/// The ids trained on are therefore exactly the in-context tokenization TRL would see, and the prompt ids are exactly what
/// generation encodes. Encoding prompt and response separately and concatenating was rejected: with SentencePiece
/// tokenizers (Llama 2) the response would gain a spurious "▁" prefix token that never occurs in context.</para>
/// <para>For byte-level BPE tokenizers (GPT-2, Llama 3, the default model) the prompt ends with ':' and the completion
/// starts with a space, which the pre-tokenizer regex always splits, so the prompt tokens are a prefix of the full
/// tokens. If a tokenizer merges across that point, the token spanning it is masked as well and
/// <see cref="SftExample.BoundaryAligned"/> is false, so callers can count such examples.</para>
/// <para><b>Special tokens.</b> BOS comes from the tokenizer (<c>Encode(text, addSpecialTokens: true)</c>); the EOS id is
/// appended (OpenFedLLM appends the EOS text, which encodes to the same id). An EOS that the tokenizer's post-processor
/// appends itself is removed first, so it is never doubled. Formats that carry their own special tokens (a chat
/// template writes <c>bos_token</c> and ends a turn with &lt;|eot_id|&gt; or &lt;|im_end|&gt;) are encoded without the
/// post-processor and get no extra EOS: see <see cref="IPromptFormat.AddSpecialTokens"/> and <see cref="IPromptFormat.AppendEos"/>.</para>
/// <para><b>Truncation</b> keeps the response. The prompt's leading tokens (BOS and template header) and trailing tokens
/// (the text after the instruction, ending with the response template) are protected; tokens are removed from the middle
/// of the instruction, keeping its start (usually the task) and its end (usually the Alpaca input, which alpaca_format
/// appends). Only when no instruction token is left is the end of the response cut, EOS included, since a cut response
/// should not teach the model to stop there. Before tokenizing, text far beyond what truncation could keep is cut
/// (<see cref="TokenizerInputCap"/>), so memory stays bounded by the sequence length.</para>
/// <para>Thread-safe if the tokenizer is.</para>
/// </remarks>
public sealed class SftExampleBuilder
{
    /// <summary>The label that excludes a position from the loss (PyTorch's cross-entropy ignore_index).</summary>
    public const int IgnoreIndex = -100;

    /// <summary>OpenFedLLM's default <c>seq_length</c>.</summary>
    public const int DefaultMaxSequenceLength = 512;

    private readonly ITextTokenizer _tokenizer;
    private readonly IPromptFormat _template;
    private readonly int? _eosId;
    private readonly int _headTokens;
    private readonly int _tailTokens;
    private readonly int _charsPerEnd;

    /// <summary>Creates a builder.</summary>
    /// <param name="tokenizer">Must define an EOS token when the template appends one (<see cref="IPromptFormat.AppendEos"/>).</param>
    /// <param name="template">The prompt format: a <see cref="PromptTemplate"/> or the model's own <see cref="ChatTemplateFormat"/>.</param>
    /// <param name="maxSequenceLength">Upper bound on the ids per example, BOS and EOS included.</param>
    /// <exception cref="ArgumentException">The template appends EOS and the tokenizer has none.</exception>
    public SftExampleBuilder(ITextTokenizer tokenizer, IPromptFormat template, int maxSequenceLength = DefaultMaxSequenceLength)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSequenceLength);
        _tokenizer = tokenizer;
        _template = template;
        _eosId = tokenizer.EosTokenId;
        if (template.AppendEos && _eosId is null)
            throw new ArgumentException("The tokenizer has no EOS token; SFT examples end with EOS so the model learns to stop.", nameof(tokenizer));
        MaxSequenceLength = maxSequenceLength;
        _charsPerEnd = TokenizerInputCap.CharsPerEnd(tokenizer, maxSequenceLength);

        // Protected prompt parts for truncation, measured once: they do not depend on the example.
        _headTokens = Encode(template.Header).Count;
        _tailTokens = tokenizer.Encode(template.AfterInstruction, addSpecialTokens: false).Count;
    }

    /// <summary>Upper bound on the ids per example.</summary>
    public int MaxSequenceLength { get; }

    /// <summary>Tokenizes, masks and truncates one example.</summary>
    /// <exception cref="InvalidOperationException">The template's own prompt tokens leave no room for a response token.</exception>
    public SftExample Build(InstructionExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        // Truncation keeps the instruction's two ends and the response's start: cut the text to those before it is
        // tokenized, so a huge record costs memory in proportion to MaxSequenceLength (see TokenizerInputCap).
        var instruction = TokenizerInputCap.KeepEnds(example.Instruction, _charsPerEnd);
        var response = TokenizerInputCap.KeepStart(example.Response, _charsPerEnd);
        var (prompt, completion) = _template.Format(instruction, response);
        var full = Encode(prompt + completion);
        var promptAlone = Encode(prompt);

        var common = CommonPrefixLength(full, promptAlone);
        var aligned = common == promptAlone.Count;
        // Misaligned: full[common] spans the end of the marker, so it is masked with the prompt.
        var boundary = aligned ? common : Math.Min(common + 1, full.Count);

        var promptIds = new int[boundary];
        for (var i = 0; i < boundary; i++) promptIds[i] = full[i];
        var eos = _template.AppendEos ? 1 : 0;
        var responseIds = new int[full.Count - boundary + eos];
        for (var i = boundary; i < full.Count; i++) responseIds[i - boundary] = full[i];
        if (eos == 1) responseIds[^1] = _eosId!.Value;

        var truncated = false;
        if (promptIds.Length + responseIds.Length > MaxSequenceLength)
        {
            (promptIds, responseIds) = Truncate(promptIds, responseIds);
            truncated = true;
        }

        var ids = new int[promptIds.Length + responseIds.Length];
        var labels = new int[ids.Length];
        promptIds.CopyTo(ids, 0);
        responseIds.CopyTo(ids, promptIds.Length);
        Array.Fill(labels, IgnoreIndex, 0, promptIds.Length);
        responseIds.CopyTo(labels, promptIds.Length);
        return new SftExample(ids, labels, promptIds.Length, truncated, aligned);
    }

    private (int[] Prompt, int[] Response) Truncate(int[] prompt, int[] response)
    {
        // Counts, not exact matches: in context the head/tail may tokenize one token differently; protecting a token
        // too many costs one instruction token, protecting too few could cut the response marker.
        var head = Math.Min(_headTokens, prompt.Length);
        var tail = Math.Min(_tailTokens, prompt.Length - head);
        var skeleton = head + tail;
        var middleBudget = MaxSequenceLength - response.Length - skeleton;
        if (middleBudget >= 0)
        {
            var front = (middleBudget + 1) / 2;
            var back = middleBudget / 2;
            int[] kept = [.. prompt.AsSpan(0, head + front), .. prompt.AsSpan(prompt.Length - tail - back)];
            return (kept, response);
        }

        var responseBudget = MaxSequenceLength - skeleton;
        if (responseBudget < 1)
            throw new InvalidOperationException(
                $"MaxSequenceLength {MaxSequenceLength} leaves no room for a response: template '{_template.Name}' alone takes {skeleton} prompt tokens.");
        int[] skeletonIds = [.. prompt.AsSpan(0, head), .. prompt.AsSpan(prompt.Length - tail)];
        return (skeletonIds, response[..responseBudget]);
    }

    private IReadOnlyList<int> Encode(string text)
    {
        if (!_template.AddSpecialTokens) return _tokenizer.Encode(text, addSpecialTokens: false);
        var ids = _tokenizer.Encode(text, addSpecialTokens: true);
        // Some post-processors append EOS; the builder appends it itself after the response.
        return ids.Count > 0 && ids[^1] == _eosId ? ids.Take(ids.Count - 1).ToArray() : ids;
    }

    private static int CommonPrefixLength(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        var n = Math.Min(a.Count, b.Count);
        var i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }
}
