using FedLlm.Data;
using FedLlm.Data.Templates;

namespace FedLlm.Tests.Data.Templates;

public sealed class ConversationAndChatTemplateTests
{
    private static ChatTemplateFormat Golden(string name, params string[] specials)
    {
        var t = JinjaGoldenTests.Template(name);
        string? Text(string key) => t.GetProperty(key).ValueKind == System.Text.Json.JsonValueKind.String ? t.GetProperty(key).GetString() : null;
        return new ChatTemplateFormat(t.GetProperty("source").GetString()!, Text("bos_token"), Text("eos_token"), specials);
    }

    private static readonly string[] Llama3Specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];
    private static readonly string[] QwenSpecials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    [Fact]
    public void Vicuna_v11_renders_fastchat_add_colon_two_with_its_quirks()
    {
        ChatMessage[] history =
        [
            new(ChatMessage.User, "Hi"),
            new(ChatMessage.Assistant, "Hello!"),
            new(ChatMessage.User, ""),
        ];

        // Separators follow the position (" " after even, "</s>" after odd); an empty message is "ROLE:" with no separator.
        Assert.Equal(VicunaConversation.SystemMessage + " USER: Hi ASSISTANT: Hello!</s>USER:ASSISTANT:", VicunaConversation.Instance.FormatPrompt(history));
    }

    [Fact]
    public void Vicuna_v11_single_turn_prompt_equals_the_openfedllm_sft_vicuna_prompt()
    {
        Assert.Equal(PromptTemplate.Vicuna.FormatPrompt("Q?"), VicunaConversation.Instance.FormatPrompt([new(ChatMessage.User, "Q?")]));
    }

    [Fact]
    public void ChatMl_and_llama3_templates_end_the_response_with_their_end_of_turn_token_instead_of_eos()
    {
        Assert.Equal("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>", PromptTemplate.ChatMl.Format("Q", "A", ""));
        Assert.Equal(
            "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>",
            PromptTemplate.Llama3.Format("Q", "A", ""));
        Assert.False(PromptTemplate.Llama3.AppendEos);
        Assert.True(PromptTemplate.Alpaca.AppendEos);
        Assert.Same(PromptTemplate.Llama3, PromptTemplate.FromName("llama3"));
    }

    [Fact]
    public void Header_turn_conversations_render_multi_turn_histories()
    {
        ChatMessage[] history = [new(ChatMessage.System, "S"), new(ChatMessage.User, "U")];

        Assert.Equal(
            "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            HeaderTurnConversation.Llama3.FormatPrompt(history));
    }

    [Fact]
    public void Model_llama3_template_splits_after_eot_and_drops_the_trailing_header_it_always_appends()
    {
        var format = Golden("llama3", Llama3Specials);

        var (prompt, completion) = format.Format("  Name a color. ", "Blue.");

        // The template trims content and writes bos_token itself.
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", prompt);
        Assert.Equal("Blue.<|eot_id|>", completion);
        Assert.False(format.AddSpecialTokens);
        Assert.False(format.AppendEos);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", format.Header);
    }

    [Fact]
    public void Model_qwen3_template_trains_on_its_empty_think_block_and_im_end_not_the_newline()
    {
        var format = Golden("qwen3", QwenSpecials);

        var (prompt, completion) = format.Format("Name a color.", "Blue.");

        Assert.Equal("<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", prompt);
        Assert.Equal("<think>\n\n</think>\n\nBlue.<|im_end|>", completion);
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
            format.FormatPrompt([new ChatMessage(ChatMessage.System, "S"), new ChatMessage(ChatMessage.User, "U")]));
    }

    [Fact]
    public void Builder_with_a_chat_template_masks_the_prompt_adds_no_bos_and_no_eos()
    {
        var tokenizer = new CharTokenizer();
        var builder = new SftExampleBuilder(tokenizer, Golden("qwen3", QwenSpecials), maxSequenceLength: 4096);

        var example = builder.Build(new InstructionExample("Q", "A"));

        const string prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n";
        const string completion = "<think>\n\n</think>\n\nA<|im_end|>";
        Assert.Equal(tokenizer.Encode(prompt + completion), example.InputIds);
        Assert.Equal(prompt.Length, example.PromptLength);
        Assert.All(example.Labels.Take(prompt.Length), l => Assert.Equal(SftExampleBuilder.IgnoreIndex, l));
        Assert.Equal(tokenizer.Encode(completion), example.Labels.Skip(prompt.Length));
    }

    [Fact]
    public void Truncation_with_a_chat_template_cuts_the_instruction_and_keeps_the_response_and_the_turn_markers()
    {
        var tokenizer = new CharTokenizer();
        var format = Golden("qwen3", QwenSpecials);
        var builder = new SftExampleBuilder(tokenizer, format, maxSequenceLength: 120);

        var example = builder.Build(new InstructionExample("start " + new string('x', 500) + " end", "A"));

        Assert.True(example.Truncated);
        Assert.Equal(120, example.Length);
        var text = tokenizer.Decode(example.InputIds, skipSpecialTokens: false);
        Assert.StartsWith("<|im_start|>user\nstart", text);
        Assert.EndsWith(" end<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>", text);
        Assert.Equal(tokenizer.Encode("<think>\n\n</think>\n\nA<|im_end|>"), example.Labels.Skip(example.PromptLength));
    }

    [Fact]
    public void Builder_with_llama3_template_ends_on_eot_text_and_keeps_the_tokenizers_bos()
    {
        var tokenizer = new CharTokenizer();
        var builder = new SftExampleBuilder(tokenizer, PromptTemplate.Llama3, maxSequenceLength: 4096);

        var example = builder.Build(new InstructionExample("Q", "A"));

        Assert.Equal(CharTokenizer.Bos, example.InputIds[0]);
        Assert.Equal(tokenizer.Encode("A<|eot_id|>"), example.Labels.Skip(example.PromptLength));
        Assert.DoesNotContain(CharTokenizer.Eos, example.InputIds);
    }

    [Fact]
    public void Catalog_resolves_names_and_needs_a_tokenizer_for_the_model_template()
    {
        Assert.Same(PromptTemplate.ChatMl, TemplateCatalog.Sft("chatml"));
        Assert.Same(VicunaConversation.Instance, TemplateCatalog.Conversation("vicuna_v1.1"));
        Assert.Throws<ArgumentException>(() => TemplateCatalog.Sft("model"));
        // CharTokenizer has no chat template.
        Assert.Throws<ArgumentException>(() => TemplateCatalog.Sft("model", new CharTokenizer()));
        Assert.Throws<ArgumentException>(() => TemplateCatalog.Conversation("alpaca"));
    }
}
