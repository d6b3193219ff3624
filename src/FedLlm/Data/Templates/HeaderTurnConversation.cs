namespace FedLlm.Data.Templates;

/// <summary>
/// A dialogue format where each turn is a role header, the text, and an end-of-turn token: ChatML and Llama 3.
/// </summary>
/// <remarks>
/// These are the formats' canonical layouts with the content inserted verbatim. A model's own chat template can differ
/// in details (Llama 3's trims each message, Qwen adds a default system turn); use <see cref="ChatTemplateFormat"/>
/// to render exactly what the model was tuned on. BOS is left to the tokenizer's post-processor.
/// </remarks>
public sealed class HeaderTurnConversation : IConversationFormat
{
    private readonly string _headerBefore;
    private readonly string _headerAfter;

    private HeaderTurnConversation(string name, string headerBefore, string headerAfter, string endOfTurn, string betweenTurns)
    {
        Name = name;
        _headerBefore = headerBefore;
        _headerAfter = headerAfter;
        EndOfTurn = endOfTurn;
        BetweenTurns = betweenTurns;
    }

    /// <summary>ChatML (Qwen, many others): <c>&lt;|im_start|&gt;role\ntext&lt;|im_end|&gt;\n</c>.</summary>
    public static HeaderTurnConversation ChatMl { get; } = new("chatml", "<|im_start|>", "\n", "<|im_end|>", "\n");

    /// <summary>Llama 3: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ntext&lt;|eot_id|&gt;</c>.</summary>
    public static HeaderTurnConversation Llama3 { get; } = new("llama-3", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", "");

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The token that closes every turn; an assistant turn is trained up to and including it.</summary>
    public string EndOfTurn { get; }

    /// <summary>Text between a turn's end token and the next header (ChatML's newline).</summary>
    public string BetweenTurns { get; }

    /// <summary>The header that opens a turn of <paramref name="role"/>.</summary>
    public string Header(string role) => _headerBefore + role + _headerAfter;

    /// <inheritdoc />
    public string FormatPrompt(IReadOnlyList<ChatMessage> history)
    {
        ArgumentNullException.ThrowIfNull(history);
        var text = new System.Text.StringBuilder();
        foreach (var message in history)
            text.Append(Header(message.Role)).Append(message.Content).Append(EndOfTurn).Append(BetweenTurns);
        return text.Append(Header(ChatMessage.Assistant)).ToString();
    }

    /// <summary>The single-turn SFT template of this format (what <see cref="PromptTemplate.ChatMl"/> and <see cref="PromptTemplate.Llama3"/> are).</summary>
    internal PromptTemplate ToPromptTemplate() => new(
        Name,
        header: Header(ChatMessage.User),
        afterInstruction: EndOfTurn + BetweenTurns + Header(ChatMessage.Assistant),
        responseTemplate: Header(ChatMessage.Assistant),
        responseSeparator: "",
        endOfTurn: EndOfTurn);
}
