using FedLlm.Tokenization;
using Xunit;

namespace FedLlm.Tests.Tokenization;

/// <summary>Which files the loader picks, how tokenizer_config.json changes the result, and its error messages.</summary>
public sealed class TokenizerLoaderTests
{
    [Fact]
    public void Missing_folder_is_named()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"fedllm-missing-{Guid.NewGuid():N}");
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(missing));
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Folder_without_tokenizer_lists_what_it_holds()
    {
        using var folder = new TempFolder();
        var empty = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(folder.Path));
        Assert.Contains(folder.Path, empty.Message, StringComparison.Ordinal);
        Assert.Contains("empty", empty.Message, StringComparison.Ordinal);

        File.WriteAllText(folder.File("config.json"), "{}");
        File.WriteAllText(folder.File("model.safetensors"), "");
        Directory.CreateDirectory(folder.File("onnx"));
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(folder.Path));
        Assert.Contains("tokenizer.json", e.Message, StringComparison.Ordinal);
        Assert.Contains("tokenizer.model", e.Message, StringComparison.Ordinal);
        Assert.Contains("config.json, model.safetensors, onnx/", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": ")]
    [InlineData("tokenizer.json", "[]")]
    [InlineData("tokenizer.json", "{\"added_tokens\": []}")]
    [InlineData("tokenizer_config.json", "{\"bos_token\": ")]
    [InlineData("tokenizer_config.json", "{\"add_bos_token\": \"yes\"}")]
    [InlineData("special_tokens_map.json", "{,}")]
    [InlineData("generation_config.json", "{\"eos_token_id\": \"two\"}")]
    [InlineData("tokenizer.model", "this is not a protobuf")]
    public void Malformed_file_is_named(string file, string content)
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path);
        File.WriteAllText(folder.File(file), content);
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(folder.Path));
        Assert.Contains(folder.File(file), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokenizer_json_is_preferred_over_tokenizer_model()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path); // vocabulary of 1000
        TokenizerFixtures.Materialize("mistral", folder.Path, f => f == "tokenizer.json"); // vocabulary of 32000
        using var t = (IDisposable)TokenizerLoader.Load(folder.Path);
        Assert.Equal(32000, ((ITextTokenizer)t).VocabSize);
    }

    [Fact]
    public void Llama_config_with_add_prefix_space_rebuilds_from_tokenizer_model()
    {
        // transformers' LlamaTokenizerFast sets from_slow=True when add_prefix_space is given.
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path);
        TokenizerFixtures.Materialize("mistral", folder.Path, f => f == "tokenizer.json");
        Assert.Equal(32000, Load(folder.Path).VocabSize);

        EditConfig(folder, c => c["add_prefix_space"] = true);
        var withPrefix = Load(folder.Path);
        Assert.Equal(1000, withPrefix.VocabSize);

        EditConfig(folder, c => c["add_prefix_space"] = false);
        var withoutPrefix = Load(folder.Path);
        Assert.Equal(1000, withoutPrefix.VocabSize);
        Assert.NotEqual(withPrefix.Encode("Hello"), withoutPrefix.Encode("Hello"));
        // Without the dummy prefix only a real space becomes "▁".
        Assert.Equal(withPrefix.Encode("Hello"), withoutPrefix.Encode(" Hello"));
        Assert.Equal(" Hello", withoutPrefix.Decode(withoutPrefix.Encode(" Hello")));
    }

    [Fact]
    public void Llama_tokenizer_add_eos_token_appends_eos_even_if_tokenizer_json_does_not()
    {
        // mistral's tokenizer.json template adds only <s>; LlamaTokenizerFast rebuilds it from the config's flags.
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("mistral", folder.Path);
        EditConfig(folder, c =>
        {
            c["add_bos_token"] = false;
            c["add_eos_token"] = true;
        });
        var t = Load(folder.Path);
        Assert.Equal([22557, 1526, 2], t.Encode("Hello world", addSpecialTokens: true));
        Assert.Equal([22557, 1526], t.Encode("Hello world"));
    }

    [Fact]
    public void Add_bos_token_without_a_bos_token_fails_at_load()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("qwen3", folder.Path);
        EditConfig(folder, c => c["add_bos_token"] = true); // Qwen3 has bos_token: null
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(folder.Path));
        Assert.Contains("bos_token", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokenizer_model_alone_uses_the_models_special_pieces()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path, f => f == "tokenizer.model");
        var t = Load(folder.Path);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
        Assert.Equal(0, t.PadTokenId); // unk
        Assert.Null(t.ChatTemplate);
        Assert.Equal(1, t.Encode("Hello", addSpecialTokens: true)[0]); // LlamaTokenizer adds BOS by default
    }

    [Fact]
    public void Special_tokens_map_fills_gaps_and_overrides_only_configs_without_added_tokens_decoder()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path, f => f == "tokenizer.model");
        File.WriteAllText(folder.File("special_tokens_map.json"),
            """{"eos_token": {"content": "<unk>", "lstrip": false}, "pad_token": "</s>"}""");

        // No tokenizer_config.json: the map is all there is.
        var mapOnly = Load(folder.Path);
        Assert.Equal(0, mapOnly.EosTokenId);
        Assert.Equal(2, mapOnly.PadTokenId);

        // An old config (no added_tokens_decoder): the map wins, as in transformers.
        File.WriteAllText(folder.File("tokenizer_config.json"), """{"eos_token": "</s>", "tokenizer_class": "LlamaTokenizer"}""");
        Assert.Equal(0, Load(folder.Path).EosTokenId);

        // A current config: its own tokens win, the map only adds the missing pad token.
        File.WriteAllText(folder.File("tokenizer_config.json"),
            """{"eos_token": "</s>", "added_tokens_decoder": {}, "tokenizer_class": "LlamaTokenizer"}""");
        var current = Load(folder.Path);
        Assert.Equal(2, current.EosTokenId);
        Assert.Equal(2, current.PadTokenId);
    }

    [Fact]
    public void Chat_template_jinja_file_wins_over_the_config()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path);
        File.WriteAllText(folder.File("chat_template.jinja"), "{{ messages[0]['content'] }}");
        Assert.Equal("{{ messages[0]['content'] }}", Load(folder.Path).ChatTemplate);
    }

    [Fact]
    public void Config_added_tokens_are_matched_in_text()
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path);
        EditConfig(folder, c => c["added_tokens_decoder"]!["1000"] = new System.Text.Json.Nodes.JsonObject
        {
            ["content"] = "<|im_start|>",
            ["special"] = true,
        });
        var t = Load(folder.Path);
        Assert.Equal(1001, t.VocabSize);
        Assert.Equal(1000, t.TokenToId("<|im_start|>"));
        var ids = t.Encode("hi<|im_start|>hi");
        Assert.Equal(t.Encode("hi").Concat([1000]).Concat(t.Encode("hi")), ids);
        // Legacy Llama tokenizers give each piece between added tokens its own "▁", so decode shows a space.
        Assert.Equal("hi hi", t.Decode(ids));
    }

    [Fact]
    public void Legacy_false_adds_no_dummy_prefix_after_special_tokens()
    {
        // The difference transformers' `legacy` flag is about: "Hello</s>world" gets "▁world" only in legacy mode.
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize("spm-llama", folder.Path);
        var legacy = Load(folder.Path);
        EditConfig(folder, c => c["legacy"] = false);
        var current = Load(folder.Path);

        Assert.Equal(legacy.Encode("Hello world"), current.Encode("Hello world"));
        Assert.NotEqual(legacy.Encode("Hello</s>world"), current.Encode("Hello</s>world"));
        Assert.Equal("Hello</s> world", legacy.Decode(legacy.Encode("Hello</s>world"), skipSpecialTokens: false));
        Assert.Equal("Hello</s>world", current.Decode(current.Encode("Hello</s>world"), skipSpecialTokens: false));
    }

    [Fact]
    public void Unigram_sentencepiece_model_is_refused_with_the_file_named()
    {
        using var folder = new TempFolder();
        // A minimal ModelProto: one piece "a" and trainer_spec { model_type: UNIGRAM }.
        File.WriteAllBytes(folder.File("tokenizer.model"), [0x0A, 0x03, 0x0A, 0x01, (byte)'a', 0x12, 0x02, 0x18, 0x01]);
        var e = Assert.Throws<TokenizerException>(() => TokenizerLoader.Load(folder.Path));
        Assert.Contains(folder.File("tokenizer.model"), e.Message, StringComparison.Ordinal);
        Assert.Contains("Unigram", e.Message, StringComparison.Ordinal);
    }

    private static ITextTokenizer Load(string folder) => TokenizerLoader.Load(folder);

    private static void EditConfig(TempFolder folder, Action<System.Text.Json.Nodes.JsonObject> edit)
    {
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(folder.File("tokenizer_config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(folder.File("tokenizer_config.json"), config.ToJsonString());
    }
}
