using System.Text;
using FedLlm.Tokenization;
using Xunit;

namespace FedLlm.Tests.Tokenization;

/// <summary>Special-token ids, templates and decode behaviour of the fixture tokenizers.</summary>
[Collection(TokenizerCollection.Name)]
public sealed class TokenizerBehaviourTests(LoadedTokenizers tokenizers)
{
    [Fact]
    public void Llama3_special_tokens()
    {
        var t = tokenizers["llama3"];
        Assert.Equal(128256, t.VocabSize);
        Assert.Equal(128000, t.BosTokenId);
        Assert.Equal(128001, t.EosTokenId); // <|end_of_text|>
        // Instruct models stop on <|eot_id|> too: generation_config.json's list.
        Assert.Equal([128001, 128009], t.EosTokenIds);
        Assert.Equal(128001, t.PadTokenId); // no pad, no unk: EOS
        Assert.Equal(128009, t.TokenToId("<|eot_id|>"));
        Assert.Equal(9906, t.TokenToId("Hello"));
        Assert.Null(t.TokenToId("<|not_a_token|>"));
        Assert.StartsWith("{% set loop_messages = messages %}", t.ChatTemplate, StringComparison.Ordinal);
        Assert.Equal(256, t.AddedTokens.Count);
        Assert.All(t.AddedTokens, a => Assert.True(a.Special));
    }

    [Fact]
    public void Qwen3_special_tokens()
    {
        var t = tokenizers["qwen3"];
        Assert.Equal(151669, t.VocabSize);
        Assert.Null(t.BosTokenId); // bos_token: null
        Assert.Equal(151645, t.EosTokenId); // <|im_end|>
        Assert.Equal([151645, 151643], t.EosTokenIds);
        Assert.Equal(151643, t.PadTokenId); // <|endoftext|>
        Assert.Contains("<|im_start|>", t.ChatTemplate, StringComparison.Ordinal);
        Assert.Contains(new AddedToken(151667, "<think>", Special: false), t.AddedTokens);
        Assert.Contains(new AddedToken(151645, "<|im_end|>", Special: true), t.AddedTokens);
    }

    [Fact]
    public void Mistral_special_tokens()
    {
        var t = tokenizers["mistral"];
        Assert.Equal(32000, t.VocabSize);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
        Assert.Equal([2], t.EosTokenIds);
        Assert.Equal(0, t.PadTokenId); // no pad: unk
        Assert.Null(t.ChatTemplate);
    }

    [Fact]
    public void SentencePiece_model_special_tokens_and_listed_chat_template()
    {
        var t = tokenizers["spm-llama"];
        Assert.Equal(1000, t.VocabSize);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
        Assert.Equal(0, t.PadTokenId);
        Assert.Equal(3, t.TokenToId("<0x00>"));
        // The config lists two templates; "default" is the one transformers uses, and it is not the first.
        Assert.StartsWith("{% if messages[0]['role'] == 'system' %}", t.ChatTemplate, StringComparison.Ordinal);
        Assert.Equal(["<unk>", "<s>", "</s>"], t.AddedTokens.Select(a => a.Content));
    }

    [Theory]
    [InlineData("llama3", "Hello world", new[] { 128000, 9906, 1917 })]
    [InlineData("qwen3", "Hello world", new[] { 9707, 1879 })] // no BOS at all
    [InlineData("mistral", "Hello world", new[] { 1, 22557, 1526 })]
    public void Add_special_tokens_adds_exactly_the_models_bos(string fixture, string text, int[] expected)
    {
        Assert.Equal(expected, tokenizers[fixture].Encode(text, addSpecialTokens: true));
        Assert.Equal(expected.SkipWhile(id => id == tokenizers[fixture].BosTokenId), tokenizers[fixture].Encode(text));
    }

    [Fact]
    public void Skip_special_tokens_keeps_added_tokens_that_are_not_special()
    {
        var t = tokenizers["qwen3"];
        var ids = t.Encode("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi<|im_end|>");
        Assert.Equal("assistant\n<think>\nhm\n</think>\n\nHi", t.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi<|im_end|>", t.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void Llama3_config_asks_for_clean_up_on_decode()
    {
        // transformers 4.x applies clean_up_tokenization_spaces=True from Llama 3's config, so " ," loses its space.
        var t = tokenizers["llama3"];
        Assert.Equal("Hello, world!", t.Decode(t.Encode("Hello , world !")));
        var qwen = tokenizers["qwen3"];
        Assert.Equal("Hello , world !", qwen.Decode(qwen.Encode("Hello , world !")));
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void Byte_level_tokenizers_round_trip_random_unicode(string fixture)
    {
        var t = tokenizers[fixture];
        var random = new Random(1234);
        // Letters, digits, spaces and newlines from several scripts and planes, including astral emoji; no
        // punctuation, so Llama 3's clean-up has nothing to change, and only NFC-stable characters for Qwen's NFC.
        string[] alphabet = ["a", "Z", "é", "ß", "Ж", "λ", "中", "文", "ひ", "한", "ع", "א", "🙂", "👍🏽", "𝐀", "7", "٣", " ", "  ", "\n", "\t", "\r\n"];
        for (int i = 0; i < 200; i++)
        {
            var text = new StringBuilder();
            for (int n = random.Next(0, 40); n > 0; n--)
            {
                text.Append(alphabet[random.Next(alphabet.Length)]);
            }

            string s = text.ToString();
            Assert.Equal(s, t.Decode(t.Encode(s, addSpecialTokens: true), skipSpecialTokens: true));
        }
    }

    [Fact]
    public void Qwen3_normalizes_to_NFC_and_Llama3_does_not()
    {
        // The project builds with InvariantGlobalization, where string.Normalize leaves non-ASCII text alone, so the
        // composed forms are written out: NFC normalization must happen inside the tokenizer.
        const string decomposed = "cafe\u0301 A\u030Angstro\u0308m \u212A";
        const string composed = "caf\u00E9 \u00C5ngstr\u00F6m K";
        var qwen = tokenizers["qwen3"];
        Assert.Equal(qwen.Encode(composed), qwen.Encode(decomposed));
        Assert.Equal(composed, qwen.Decode(qwen.Encode(decomposed)));
        var llama = tokenizers["llama3"];
        Assert.NotEqual(llama.Encode(composed), llama.Encode(decomposed));
        Assert.Equal(decomposed, llama.Decode(llama.Encode(decomposed)));
    }

    [Fact]
    public void Decode_drops_ids_past_the_vocabulary_and_rejects_negative_ids()
    {
        var t = tokenizers["mistral"];
        Assert.Equal("Hello", t.Decode([22557, 999_999]));
        Assert.Equal("", t.Decode([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Decode([22557, -1]));
    }

    [Fact]
    public void Encode_rejects_an_unpaired_surrogate()
    {
        Assert.Throws<ArgumentException>(() => tokenizers["llama3"].Encode("a\uD800b"));
    }

    [Fact]
    public void Encoding_from_many_threads_gives_the_same_ids()
    {
        var t = tokenizers["llama3"];
        var cases = TokenizerFixtures.Golden("llama3");
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var c = cases[i % cases.Count];
            Assert.Equal(c.IdsSpecial, t.Encode(c.Text, addSpecialTokens: true));
            Assert.Equal(c.Ids, t.Encode(c.Text));
        });
    }
}
