using FedLlm.Data.Templates.Jinja;
using FedLlm.Tokenization;

namespace FedLlm.Data.Templates;

/// <summary>
/// The model's own chat template (tokenizer_config.json's <c>chat_template</c>), rendered per example as transformers'
/// <c>apply_chat_template</c> renders it, for SFT (<see cref="IPromptFormat"/>) and for preference prompts
/// (<see cref="IConversationFormat"/>).
/// </summary>
/// <remarks>
/// <para><b>Prompt</b>: the user turn rendered with <c>add_generation_prompt=True</c>. <b>Completion</b>: the conversation
/// [user, assistant] rendered without it, minus the prompt (which must be its prefix, else the template cannot be split
/// for a loss mask and rendering fails). The completion is cut right after the first special token that follows the
/// response (the end-of-turn token: &lt;|eot_id|&gt;, &lt;|im_end|&gt;); what a template writes after it, such as ChatML's
/// newline or a next-turn header (the first Llama 3 template always appends one), belongs to the next turn and is
/// not trained on. Qwen3's empty "&lt;think&gt;\n\n&lt;/think&gt;\n\n" before a final answer is part of the completion,
/// as the template renders it.</para>
/// <para>The text carries the template's own <c>bos_token</c>, so it is encoded without the tokenizer's post-processor
/// (<see cref="AddSpecialTokens"/> false) and no EOS id is appended (<see cref="AppendEos"/> false).</para>
/// </remarks>
public sealed class ChatTemplateFormat : IPromptFormat, IConversationFormat
{
    // Markers for locating the instruction inside a rendered prompt; control characters no template trims.
    private const string InstructionMarker = "\u0001instruction\u0002";

    private readonly JinjaTemplate _template;
    private readonly string? _bosToken;
    private readonly string? _eosToken;
    private readonly string[] _endOfTurnTokens;

    /// <summary>Creates the format from a template's source.</summary>
    /// <param name="template">The Jinja source.</param>
    /// <param name="bosToken">The <c>bos_token</c> variable (null if the model has none, as Qwen).</param>
    /// <param name="eosToken">The <c>eos_token</c> variable.</param>
    /// <param name="endOfTurnTokens">Special token strings that can end an assistant turn; the tokenizer's special tokens.</param>
    /// <param name="name">The name reports show.</param>
    /// <exception cref="JinjaException">The template cannot be parsed.</exception>
    public ChatTemplateFormat(string template, string? bosToken, string? eosToken, IEnumerable<string> endOfTurnTokens, string name = "model")
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(endOfTurnTokens);
        _template = JinjaTemplate.Parse(template);
        _bosToken = bosToken;
        _eosToken = eosToken;
        _endOfTurnTokens = endOfTurnTokens.Where(t => t.Length > 0).Distinct().ToArray();
        Name = name;

        var probe = FormatPrompt(InstructionMarker);
        var at = probe.IndexOf(InstructionMarker, StringComparison.Ordinal);
        Header = at < 0 ? "" : probe[..at];
        AfterInstruction = at < 0 ? "" : probe[(at + InstructionMarker.Length)..];
    }

    /// <summary>The format of a tokenizer's chat template, with its BOS/EOS text and special tokens.</summary>
    /// <exception cref="ArgumentException">The tokenizer has no chat template.</exception>
    public static ChatTemplateFormat FromTokenizer(ITextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var template = tokenizer.ChatTemplate
            ?? throw new ArgumentException("The model's tokenizer_config.json has no chat_template; choose a named template instead.", nameof(tokenizer));
        string? TokenText(int? id) => id is int i ? tokenizer.Decode([i], skipSpecialTokens: false) : null;
        var specials = tokenizer.AddedTokens.Where(t => t.Special).Select(t => t.Content).ToList();
        if (TokenText(tokenizer.EosTokenId) is { } eos) specials.Add(eos);
        return new ChatTemplateFormat(template, TokenText(tokenizer.BosTokenId), TokenText(tokenizer.EosTokenId), specials);
    }

    /// <inheritdoc cref="IPromptFormat.Name" />
    public string Name { get; }

    /// <inheritdoc />
    public string Header { get; }

    /// <inheritdoc />
    public string AfterInstruction { get; }

    /// <inheritdoc />
    public bool AddSpecialTokens => false;

    /// <inheritdoc />
    public bool AppendEos => false;

    /// <summary>Renders messages as <c>apply_chat_template(messages, add_generation_prompt=...)</c> does.</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="addGenerationPrompt">Append the assistant header.</param>
    /// <param name="extra">More template variables (e.g. <c>enable_thinking</c>).</param>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages.Select(m => (object?)new OrderedDictionary<string, object?>(StringComparer.Ordinal)
            {
                ["role"] = m.Role,
                ["content"] = m.Content,
            }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (_bosToken is not null) variables["bos_token"] = _bosToken;
        if (_eosToken is not null) variables["eos_token"] = _eosToken;
        if (extra is not null) foreach (var (k, v) in extra) variables[k] = v;
        return _template.Render(variables);
    }

    /// <inheritdoc />
    public string FormatPrompt(string instruction) => Render([new ChatMessage(ChatMessage.User, instruction)], addGenerationPrompt: true);

    /// <inheritdoc />
    public string FormatPrompt(IReadOnlyList<ChatMessage> history) => Render(history, addGenerationPrompt: true);

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The rendered conversation does not start with the rendered prompt.</exception>
    public (string Prompt, string Completion) Format(string instruction, string response)
    {
        ArgumentNullException.ThrowIfNull(response);
        var prompt = FormatPrompt(instruction);
        var full = Render([new ChatMessage(ChatMessage.User, instruction), new ChatMessage(ChatMessage.Assistant, response)], addGenerationPrompt: false);
        if (!full.StartsWith(prompt, StringComparison.Ordinal))
            throw new InvalidOperationException(
                $"Chat template '{Name}' renders the conversation so that it does not start with the generation prompt; the loss mask cannot be placed.");
        var rest = full[prompt.Length..];
        var core = response.Trim();
        var responseAt = core.Length == 0 ? -1 : rest.IndexOf(core, StringComparison.Ordinal);
        var searchFrom = responseAt < 0 ? 0 : responseAt + core.Length;
        var end = -1;
        foreach (var token in _endOfTurnTokens)
        {
            var at = rest.IndexOf(token, searchFrom, StringComparison.Ordinal);
            if (at >= 0 && (end < 0 || at + token.Length < end)) end = at + token.Length;
        }

        return (prompt, end < 0 ? rest : rest[..end]);
    }
}
