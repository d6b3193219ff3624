using FedLlm.Tokenization;

namespace FedLlm.Data.Templates;

/// <summary>Looks templates up by name at the CLI/config edge: alpaca, vicuna, chatml, llama-3, and "model".</summary>
public static class TemplateCatalog
{
    /// <summary>The name that selects the model's own chat template.</summary>
    public const string Model = "model";

    /// <summary>The SFT template names.</summary>
    public static IReadOnlyList<string> SftNames { get; } = [.. PromptTemplate.BuiltIn.Select(t => t.Name), Model];

    /// <summary>The conversation (preference prompt) format names.</summary>
    public static IReadOnlyList<string> ConversationNames { get; } = ["vicuna_v1.1", "chatml", "llama-3", Model];

    /// <summary>An SFT format by name; "model" needs the tokenizer whose chat template to use.</summary>
    /// <exception cref="ArgumentException">Unknown name, or "model" without a tokenizer that has a chat template.</exception>
    public static IPromptFormat Sft(string name, ITextTokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (string.Equals(name, Model, StringComparison.OrdinalIgnoreCase))
            return ChatTemplateFormat.FromTokenizer(tokenizer ?? throw new ArgumentException("The 'model' template needs a model's tokenizer (--model).", nameof(tokenizer)));
        return PromptTemplate.FromName(name);
    }

    /// <summary>A conversation format by name (vicuna_v1.1 is OpenFedLLM's DPO default).</summary>
    /// <exception cref="ArgumentException">Unknown name, or "model" without a tokenizer that has a chat template.</exception>
    public static IConversationFormat Conversation(string name, ITextTokenizer? tokenizer = null) => name?.ToLowerInvariant() switch
    {
        "vicuna_v1.1" or "vicuna" or "vicuna-v1.1" => VicunaConversation.Instance,
        "chatml" => HeaderTurnConversation.ChatMl,
        "llama-3" or "llama3" => HeaderTurnConversation.Llama3,
        Model => ChatTemplateFormat.FromTokenizer(tokenizer ?? throw new ArgumentException("The 'model' template needs a model's tokenizer (--model).", nameof(tokenizer))),
        _ => throw new ArgumentException($"Unknown conversation template '{name}'. Known: {string.Join(", ", ConversationNames)}.", nameof(name)),
    };
}
