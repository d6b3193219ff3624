namespace FedLlm.Data.Templates;

/// <summary>
/// Formats a multi-turn dialogue into the prompt a model continues: the turns so far, then the assistant's
/// generation header. Preference sets (HH-RLHF, UltraFeedback) build their <see cref="PreferenceExample.Prompt"/> with it.
/// </summary>
/// <remarks>Implementations are immutable and thread-safe.</remarks>
public interface IConversationFormat
{
    /// <summary>The name the CLI looks the format up by.</summary>
    string Name { get; }

    /// <summary>The history, rendered turn by turn, followed by the header after which the assistant answers.</summary>
    /// <param name="history">The turns so far, usually ending with a user turn.</param>
    string FormatPrompt(IReadOnlyList<ChatMessage> history);
}
