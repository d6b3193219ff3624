using FedLlm.Data;
using FedLlm.Data.Templates;
using FedLlm.Tests.Tokenization;
using FedLlm.Tokenization;

namespace FedLlm.Tests.Data.Templates;

/// <summary>The "model" template on real Llama 3 and Qwen3 tokenizer folders: ids as apply_chat_template would give them.</summary>
public sealed class ModelChatTemplateTests
{
    private static ITextTokenizer Load(string name)
    {
        using var folder = new TempFolder();
        TokenizerFixtures.Materialize(name, folder.Path);
        return TokenizerLoader.Load(folder.Path);
    }

    [Fact]
    public void Llama3_sft_example_has_one_bos_ends_on_eot_and_trains_only_the_answer()
    {
        var tokenizer = Load("llama3");
        var format = TemplateCatalog.Sft(TemplateCatalog.Model, tokenizer);
        var builder = new SftExampleBuilder(tokenizer, format, maxSequenceLength: 512);

        var example = builder.Build(new InstructionExample("Name a color.", "Blue."));

        var bos = tokenizer.TokenToId("<|begin_of_text|>")!.Value;
        var eot = tokenizer.TokenToId("<|eot_id|>")!.Value;
        // The template writes bos_token itself; the post-processor must not add a second one.
        Assert.Equal(bos, example.InputIds[0]);
        Assert.Equal(1, example.InputIds.Count(id => id == bos));
        Assert.Equal(eot, example.InputIds[^1]);
        Assert.Equal("Blue.<|eot_id|>", tokenizer.Decode(example.Labels.Where(l => l != SftExampleBuilder.IgnoreIndex), skipSpecialTokens: false));
        Assert.True(example.BoundaryAligned);
    }

    [Fact]
    public void Qwen3_preference_prompt_is_the_rendered_history_with_a_generation_header()
    {
        var tokenizer = Load("qwen3");
        var format = TemplateCatalog.Conversation(TemplateCatalog.Model, tokenizer);

        var prompt = format.FormatPrompt([new ChatMessage(ChatMessage.User, "Hi"), new ChatMessage(ChatMessage.Assistant, "Hello."), new ChatMessage(ChatMessage.User, "Bye")]);

        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", prompt);
    }
}
