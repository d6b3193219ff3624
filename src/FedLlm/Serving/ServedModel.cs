using FedLlm.Tokenization;

namespace FedLlm.Serving;

/// <summary>
/// What a server offers under which name: the base model under its own name and each adapter of the bank under the
/// adapter's name, with the tokenizer and chat prompt they share.
/// </summary>
public sealed class ServedModel
{
    /// <summary>The base model served under <paramref name="baseName"/>, with its adapters, tokenizer and chat
    /// prompt.</summary>
    /// <exception cref="ArgumentException">The base name is blank or is also an adapter's name.</exception>
    public ServedModel(string baseName, AdapterBank adapters, ITextTokenizer tokenizer, ChatPrompt chat)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(baseName);
        if (adapters.Slot(baseName) is not null) throw new ArgumentException($"adapter name '{baseName}' is also the base model's name; rename one", nameof(baseName));
        BaseName = baseName;
        Adapters = adapters;
        Tokenizer = tokenizer;
        Chat = chat;
    }

    /// <summary>The model name that asks for the base without an adapter.</summary>
    public string BaseName { get; }

    /// <summary>The adapters, each under its own model name.</summary>
    public AdapterBank Adapters { get; }

    /// <summary>The tokenizer prompts are encoded with.</summary>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>How chat messages become a prompt.</summary>
    public ChatPrompt Chat { get; }

    /// <summary>Tokens a sequence may span (prompt and completion): the config's max_position_embeddings.</summary>
    public int ContextLength => Adapters.Model.Config.MaxPositionEmbeddings;

    /// <summary>Every model name a request may ask for: the base first, then the adapters.</summary>
    public IReadOnlyList<string> Names => [BaseName, .. Adapters.Names];

    /// <summary>The adapter slot of a model name (<see cref="AdapterBank.BaseSlot"/> for the base), or null if unknown.</summary>
    public int? Resolve(string name) => name == BaseName ? AdapterBank.BaseSlot : Adapters.Slot(name);
}
