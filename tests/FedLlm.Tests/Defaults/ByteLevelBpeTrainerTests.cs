using System.Text.Json;
using FedLlm.Defaults;
using FedLlm.Tests.Data;
using Xunit;

namespace FedLlm.Tests.Defaults;

public sealed class ByteLevelBpeTrainerTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[] Corpus =
    [
        "the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the mat is flat",
        "It's 12 o'clock, isn't it?", "shares jump; shares slump", "Café au lait ☕",
    ];

    private static readonly string[] RoundTripTexts =
    [
        "the cat sat", "unseen words: zebra quokka", "  leading and   inner spaces ", "tabs\tand\nnewlines\r\n",
        "It's 12.5% of $3,400!", "Café Zürich naïve — “quotes”", "emoji 🚀🔥 and 日本語", "",
    ];

    [Fact]
    public void First_merge_is_the_most_frequent_pair()
    {
        // "cd" occurs 3 times (in "cd" and twice in "Ġcd"), "ab" once, "Ġc" twice.
        var tokenizer = new ByteLevelBpeTrainer(vocabSize: 256 + 3 + 1, minFrequency: 1).Train(["cd cd cd", "ab"]);

        Assert.Equal([("c", "d")], tokenizer.Merges);
        Assert.Equal(260, tokenizer.VocabSize);
    }

    [Fact]
    public void Ties_go_to_the_ordinally_smallest_pair_whatever_the_text_order()
    {
        var forward = new ByteLevelBpeTrainer(256 + 3 + 1, minFrequency: 1).Train(["xy", "ab"]);
        var backward = new ByteLevelBpeTrainer(256 + 3 + 1, minFrequency: 1).Train(["ab", "xy"]);

        Assert.Equal([("a", "b")], forward.Merges);
        Assert.Equal(forward.Merges, backward.Merges);
    }

    [Fact]
    public void Training_is_deterministic_and_independent_of_corpus_order()
    {
        var a = new ByteLevelBpeTrainer(300).Train(Corpus);
        var b = new ByteLevelBpeTrainer(300).Train(Corpus.Reverse());

        Assert.Equal(a.ToTokenizerJson(), b.ToTokenizerJson());
    }

    [Fact]
    public void Stops_when_no_pair_reaches_min_frequency()
    {
        var tokenizer = new ByteLevelBpeTrainer(1000, minFrequency: 2).Train(["abc"]);

        Assert.Empty(tokenizer.Merges);
        Assert.Equal(259, tokenizer.VocabSize);
    }

    [Fact]
    public void Merges_build_on_earlier_merges_and_ids_follow_merge_order()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);

        for (var i = 0; i < tokenizer.Merges.Count; i++)
        {
            var (left, right) = tokenizer.Merges[i];
            Assert.NotNull(tokenizer.TokenToId(left));
            Assert.NotNull(tokenizer.TokenToId(right));
            Assert.Equal(256 + i, tokenizer.TokenToId(left + right)); // no duplicate results in this corpus
        }

        // This small corpus runs out of pairs seen twice before 300 ids; the specials follow the last merge.
        var first = 256 + tokenizer.Merges.Count;
        Assert.True(tokenizer.Merges.Count > 10);
        Assert.Equal(first, tokenizer.ModelVocabSize);
        Assert.Equal(["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"], Enumerable.Range(first, 3).Select(tokenizer.IdToToken));
        Assert.Equal(first, tokenizer.BosTokenId);
        Assert.Equal(first + 1, tokenizer.EosTokenId);
        Assert.Equal(first + 2, tokenizer.PadTokenId);
    }

    [Fact]
    public void Frequent_words_become_single_tokens()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);

        Assert.Equal([tokenizer.TokenToId("the")!.Value, tokenizer.TokenToId("Ġcat")!.Value], tokenizer.Encode("the cat"));
    }

    [Fact]
    public void Encode_decode_round_trips_any_text()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);

        Assert.All(RoundTripTexts, text =>
        {
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text, addSpecialTokens: true)));
        });
    }

    [Fact]
    public void Bos_is_added_on_request_and_special_strings_in_text_map_to_their_ids()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);

        var ids = tokenizer.Encode("a<|end_of_text|>b", addSpecialTokens: true);

        Assert.Equal([tokenizer.BosTokenId!.Value, 'a', tokenizer.EosTokenId!.Value, 'b'], ids);
        Assert.Equal("ab", tokenizer.Decode(ids));
        Assert.Equal("<|begin_of_text|>a<|end_of_text|>b", tokenizer.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void Saved_files_load_in_the_rust_tokenizers_and_encode_identically()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);
        var files = tokenizer.Save(_dir.Path);

        using var hf = new Tokenizers.DotNet.Tokenizer(vocabPath: files.TokenizerJsonPath);

        Assert.All(RoundTripTexts.Concat(Corpus), text =>
        {
            // Tokenizers.DotNet encodes with add_special_tokens and decodes skipping them.
            var expected = tokenizer.Encode(text, addSpecialTokens: true).Select(i => (uint)i).ToArray();
            var actual = hf.Encode(text);
            Assert.Equal(expected, actual);
            Assert.Equal(text, hf.Decode(actual));
        });
    }

    [Fact]
    public void Saved_tokenizer_json_has_the_hugging_face_layout()
    {
        var tokenizer = new ByteLevelBpeTrainer(300).Train(Corpus);
        using var json = JsonDocument.Parse(tokenizer.ToTokenizerJson());
        var root = json.RootElement;

        var added = root.GetProperty("added_tokens").EnumerateArray().ToList();
        Assert.Equal(["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"], added.Select(t => t.GetProperty("content").GetString()));
        var first = tokenizer.ModelVocabSize;
        Assert.Equal([first, first + 1, first + 2], added.Select(t => t.GetProperty("id").GetInt32()));
        Assert.All(added, t => Assert.True(t.GetProperty("special").GetBoolean()));
        var pre = root.GetProperty("pre_tokenizer");
        Assert.Equal("ByteLevel", pre.GetProperty("type").GetString());
        Assert.False(pre.GetProperty("add_prefix_space").GetBoolean());
        Assert.True(pre.GetProperty("use_regex").GetBoolean());
        Assert.Equal("ByteLevel", root.GetProperty("decoder").GetProperty("type").GetString());
        var post = root.GetProperty("post_processor");
        Assert.Equal("TemplateProcessing", post.GetProperty("type").GetString());
        Assert.Equal("<|begin_of_text|>", post.GetProperty("single")[0].GetProperty("SpecialToken").GetProperty("id").GetString());
        var model = root.GetProperty("model");
        Assert.Equal("BPE", model.GetProperty("type").GetString());
        Assert.Equal(first, model.GetProperty("vocab").EnumerateObject().Count());
        Assert.Equal(tokenizer.Merges.Count, model.GetProperty("merges").GetArrayLength());

        using var config = JsonDocument.Parse(tokenizer.ToTokenizerConfigJson(256));
        var c = config.RootElement;
        Assert.Equal("<|begin_of_text|>", c.GetProperty("bos_token").GetString());
        Assert.Equal("<|end_of_text|>", c.GetProperty("eos_token").GetString());
        Assert.Equal("<|pad|>", c.GetProperty("pad_token").GetString());
        Assert.True(c.GetProperty("add_bos_token").GetBoolean());
        Assert.Equal(256, c.GetProperty("model_max_length").GetInt32());
        Assert.Equal("PreTrainedTokenizerFast", c.GetProperty("tokenizer_class").GetString());
    }
}
