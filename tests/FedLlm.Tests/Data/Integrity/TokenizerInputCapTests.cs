using FedLlm.Data;
using FedLlm.Data.Templates;
using FedLlm.Tokenization;
using Xunit;

namespace FedLlm.Tests.Data.Integrity;

public sealed class TokenizerInputCapTests
{
    /// <summary>A <see cref="CharTokenizer"/> that records the longest text it was asked to encode.</summary>
    private sealed class RecordingTokenizer(int? maxTokenChars) : ITextTokenizer
    {
        private readonly CharTokenizer _inner = new();
        public int LongestInput { get; private set; }
        public int VocabSize => _inner.VocabSize;
        public int? BosTokenId => _inner.BosTokenId;
        public int? EosTokenId => _inner.EosTokenId;
        public int? PadTokenId => _inner.PadTokenId;
        public string? ChatTemplate => null;
        public int? MaxTokenChars => maxTokenChars;

        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
        {
            LongestInput = Math.Max(LongestInput, text.Length);
            return _inner.Encode(text, addSpecialTokens);
        }

        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => _inner.Decode(ids, skipSpecialTokens);
        public int? TokenToId(string token) => _inner.TokenToId(token);
    }

    private const int MaxLength = 256;
    private const int Huge = 2_000_000;

    private static string Text(int length, int seed) =>
        string.Create(length, seed, (span, s) => { for (var i = 0; i < span.Length; i++) span[i] = (char)('a' + (i * 7 + s) % 26); });

    [Theory]
    [InlineData(Huge, 10)]
    [InlineData(10, Huge)]
    [InlineData(Huge, Huge)]
    public void A_huge_record_reaches_the_tokenizer_cut_to_the_sequence_length_bound_and_builds_the_same_example(
        int instructionLength, int responseLength)
    {
        var example = new InstructionExample(Text(instructionLength, 1), Text(responseLength, 2));
        var capped = new RecordingTokenizer(maxTokenChars: 1);
        // A tokenizer claiming enormous tokens gets no effective cap: the reference result, as before the cap.
        var uncapped = new RecordingTokenizer(maxTokenChars: int.MaxValue);

        var built = new SftExampleBuilder(capped, PromptTemplate.Alpaca, MaxLength).Build(example);
        var reference = new SftExampleBuilder(uncapped, PromptTemplate.Alpaca, MaxLength).Build(example);

        // Template text plus at most 2·MaxLength characters at each kept end of the instruction and of the response.
        var (emptyPrompt, emptyCompletion) = PromptTemplate.Alpaca.Format("", "");
        var bound = emptyPrompt.Length + emptyCompletion.Length + 3 * TokenizerInputCap.CharsPerEnd(capped, MaxLength);
        Assert.InRange(capped.LongestInput, 1, bound);
        Assert.True(uncapped.LongestInput >= Math.Max(instructionLength, responseLength));
        Assert.Equal(reference.InputIds, built.InputIds);
        Assert.Equal(reference.Labels, built.Labels);
        Assert.True(built.Truncated);
    }

    [Fact]
    public void A_tokenizer_that_does_not_know_its_longest_token_gets_the_generous_default()
    {
        var tokenizer = new RecordingTokenizer(maxTokenChars: null);

        Assert.Equal(2 * MaxLength * TokenizerInputCap.UnknownTokenChars, TokenizerInputCap.CharsPerEnd(tokenizer, MaxLength));
    }

    [Fact]
    public void Cuts_never_split_a_surrogate_pair()
    {
        var text = "ab😀cd" + new string('x', 10) + "😀yz";

        Assert.Equal("ab", TokenizerInputCap.KeepStart(text, 3));
        var ends = TokenizerInputCap.KeepEnds(text, 3);
        Assert.Equal("ab" + "yz", ends);
        Assert.DoesNotContain(ends, char.IsSurrogate);
    }

    [Fact]
    public void Short_text_is_left_alone()
    {
        Assert.Equal("abcdef", TokenizerInputCap.KeepEnds("abcdef", 3));
        Assert.Equal("abc", TokenizerInputCap.KeepStart("abc", 3));
    }
}
