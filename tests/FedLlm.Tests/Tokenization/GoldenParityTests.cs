using System.Text.Json;
using Xunit;

namespace FedLlm.Tests.Tokenization;

/// <summary>
/// Every hard string of the golden files, encoded and decoded, against the reference: tokenizers.js for the
/// tokenizer.json fixtures, sentencepiece itself for the tokenizer.model one.
/// </summary>
[Collection(TokenizerCollection.Name)]
public sealed class GoldenParityTests(LoadedTokenizers tokenizers)
{
    public static TheoryData<string> Fixtures() => [.. TokenizerFixtures.All];

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Encode_without_special_tokens_matches_reference(string fixture)
    {
        var tokenizer = tokenizers[fixture];
        AssertAll(fixture, c => (c.Ids, tokenizer.Encode(c.Text, addSpecialTokens: false)));
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Encode_with_special_tokens_matches_reference(string fixture)
    {
        var tokenizer = tokenizers[fixture];
        AssertAll(fixture, c => (c.IdsSpecial, tokenizer.Encode(c.Text, addSpecialTokens: true)));
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Decode_matches_reference(string fixture)
    {
        var tokenizer = tokenizers[fixture];
        AssertAll(fixture, c => (c.Decoded, tokenizer.Decode(c.Ids, skipSpecialTokens: true)));
        AssertAll(fixture, c => (c.DecodedSpecialKept, c.DecodedSpecialKept is null ? null : tokenizer.Decode(c.IdsSpecial, skipSpecialTokens: false)));
        AssertAll(fixture, c => (c.DecodedSpecialSkipped, c.DecodedSpecialSkipped is null ? null : tokenizer.Decode(c.IdsSpecial, skipSpecialTokens: true)));
    }

    [Fact]
    public void Golden_files_cover_the_hard_cases()
    {
        // Guards against a regenerated golden file that silently lost its hard strings.
        var texts = TokenizerFixtures.Golden("llama3").Select(c => c.Text).ToArray();
        Assert.True(texts.Length >= 75, $"only {texts.Length} cases");
        Assert.Contains("", texts);
        Assert.Contains(texts, t => t.Contains("<|eot_id|>", StringComparison.Ordinal));
        Assert.Contains(texts, t => t.Contains('\u200D', StringComparison.Ordinal)); // ZWJ emoji sequence
        Assert.Contains(texts, t => t.Contains('\u0301', StringComparison.Ordinal)); // NFD accent
        Assert.Contains(texts, t => t.Length >= 300);
        Assert.All(TokenizerFixtures.All, f => Assert.Equal(texts, TokenizerFixtures.Golden(f).Select(c => c.Text)));
    }

    /// <summary>Checks every case and reports all mismatches at once, each with its input.</summary>
    private static void AssertAll<T>(string fixture, Func<GoldenCase, (T Expected, T Actual)> check)
    {
        var failures = new List<string>();
        foreach (var c in TokenizerFixtures.Golden(fixture))
        {
            var (expected, actual) = check(c);
            string e = JsonSerializer.Serialize(expected), a = JsonSerializer.Serialize(actual);
            if (e != a)
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: expected {e}, got {a}");
            }
        }

        Assert.True(failures.Count == 0, $"{fixture}: {failures.Count} mismatches\n{string.Join("\n", failures)}");
    }
}
