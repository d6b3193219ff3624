using System.Text.Json;
using FedLlm.Defaults;
using Xunit;

namespace FedLlm.Tests.Defaults;

public sealed class DefaultTokenizerTests
{
    private static readonly ByteLevelBpeTokenizer Tokenizer = DefaultTokenizer.Train(FinancialSentimentDataset.Generate());

    [Fact]
    public void Has_512_ids_with_llama3_specials_at_the_end()
    {
        Assert.Equal(512, Tokenizer.VocabSize);
        Assert.Equal(509, Tokenizer.BosTokenId);
        Assert.Equal(510, Tokenizer.EosTokenId);
        Assert.Equal(511, Tokenizer.PadTokenId);
        Assert.Equal(509, Tokenizer.TokenToId("<|begin_of_text|>"));
    }

    [Fact]
    public void Committed_fixture_is_what_training_produces_today()
    {
        // The golden ids were computed on the committed file; if training output drifts, they no longer test it.
        var dir = DefaultsFixtures.TokenizerDirectory;
        if (DefaultsFixtures.Update) Tokenizer.Save(dir);

        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "tokenizer.json")), Tokenizer.ToTokenizerJson());
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "tokenizer_config.json")), Tokenizer.ToTokenizerConfigJson());
    }

    [Fact]
    public void Ids_match_the_javascript_reference_and_the_rust_tokenizers()
    {
        var cases = LoadGolden();
        using var rust = new Tokenizers.DotNet.Tokenizer(vocabPath: Path.Combine(DefaultsFixtures.TokenizerDirectory, "tokenizer.json"));

        Assert.NotEmpty(cases);
        Assert.All(cases, c =>
        {
            Assert.Equal(c.Ids, Tokenizer.Encode(c.Text, addSpecialTokens: true));
            Assert.Equal(c.IdsWithoutSpecial, Tokenizer.Encode(c.Text));
            Assert.Equal(c.Ids.Select(i => (uint)i), rust.Encode(c.Text));
            Assert.Equal(c.Decoded, Tokenizer.Decode(c.Ids));
            Assert.Equal(c.Decoded, rust.Decode([.. c.Ids.Select(i => (uint)i)]));
        });
    }

    [Fact]
    public void Golden_cases_are_not_trivial()
    {
        // Guards the fixture itself: merges must be exercised, not just single bytes.
        var prompt = LoadGolden()[0];
        Assert.True(prompt.Ids.Count < prompt.Text.Length / 3, $"{prompt.Ids.Count} ids for {prompt.Text.Length} chars");
        Assert.Equal(509, prompt.Ids[0]);
    }

    [Fact]
    public void Answers_are_single_tokens_after_the_response_marker()
    {
        // One token per answer makes the default task's exact match a single next-token decision.
        foreach (var label in new[] { "positive", "negative", "neutral" })
            Assert.Single(Tokenizer.Encode(" " + label));
    }

    private sealed record GoldenCase(string Text, IReadOnlyList<int> Ids, IReadOnlyList<int> IdsWithoutSpecial, string Decoded);

    private static List<GoldenCase> LoadGolden()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(DefaultsFixtures.TokenizerDirectory, "golden_ids.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToList(),
            c.GetProperty("ids_without_special").EnumerateArray().Select(i => i.GetInt32()).ToList(),
            c.GetProperty("decoded").GetString()!)).ToList();
    }
}
