namespace FedLlm.Data.Templates;

/// <summary>
/// FastChat's <c>vicuna_v1.1</c> conversation template, as OpenFedLLM's utils/conversation.py (a FastChat copy of
/// 2023-11-10) renders it for DPO prompts: separator style ADD_COLON_TWO, <c>sep=" "</c>, <c>sep2="&lt;/s&gt;"</c>.
/// </summary>
/// <remarks>
/// <para>The prompt is <c>system + " "</c>, then for message i: <c>ROLE + ": " + text + (i even ? " " : "&lt;/s&gt;")</c>,
/// then <c>"ASSISTANT:"</c>. Two FastChat details are kept on purpose so prompts match OpenFedLLM's byte for byte:
/// the separator follows the message's position (even/odd), not its role; and an empty message renders as
/// <c>ROLE + ":"</c> with no separator, because FastChat tests <c>if message:</c>.</para>
/// <para>Roles map "user" to USER and everything else to ASSISTANT; a system turn is not part of this template
/// (its system message is fixed), so system turns are refused.</para>
/// </remarks>
public sealed class VicunaConversation : IConversationFormat
{
    /// <summary>vicuna_v1.1's fixed system message.</summary>
    public const string SystemMessage =
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

    private VicunaConversation()
    {
    }

    /// <summary>The single instance.</summary>
    public static VicunaConversation Instance { get; } = new();

    /// <inheritdoc />
    public string Name => "vicuna_v1.1";

    /// <inheritdoc />
    /// <exception cref="ArgumentException">A turn has the system role.</exception>
    public string FormatPrompt(IReadOnlyList<ChatMessage> history)
    {
        ArgumentNullException.ThrowIfNull(history);
        var text = new System.Text.StringBuilder(SystemMessage).Append(' ');
        for (var i = 0; i < history.Count; i++)
        {
            var message = history[i];
            if (message.Role == ChatMessage.System)
                throw new ArgumentException("vicuna_v1.1 has a fixed system message; a system turn cannot be rendered.", nameof(history));
            var role = message.Role == ChatMessage.User ? "USER" : "ASSISTANT";
            if (message.Content.Length > 0)
                text.Append(role).Append(": ").Append(message.Content).Append(i % 2 == 0 ? " " : "</s>");
            else
                text.Append(role).Append(':');
        }

        return text.Append("ASSISTANT:").ToString();
    }
}
