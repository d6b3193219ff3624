using FedLlm.Data.Templates;
using FedLlm.Tokenization;

namespace FedLlm.Serving;

/// <summary>
/// Turns a chat (system, user and assistant messages ending with a user turn) into prompt token ids: with the model's
/// own chat template (tokenizer_config.json's <c>chat_template</c>, rendered by FedLlm's Jinja) when it has one, else
/// with a named SFT template such as alpaca, which knows one instruction and one response per turn.
/// </summary>
public sealed class ChatPrompt
{
    private readonly ITextTokenizer tokenizer;
    private readonly IPromptFormat format;

    /// <param name="templateName">"model" (the tokenizer's chat template) or a named SFT template (alpaca, vicuna, chatml, llama-3).</param>
    /// <exception cref="ArgumentException">Unknown template, or "model" for a tokenizer without a chat template.</exception>
    /// <param name="tokenizer">The served model's tokenizer (its chat template, special tokens).</param>
    public ChatPrompt(ITextTokenizer tokenizer, string templateName)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        this.tokenizer = tokenizer;
        format = TemplateCatalog.Sft(templateName, tokenizer);
    }

    /// <summary>"model" when the tokenizer has a chat template, else <paramref name="fallback"/>.</summary>
    public static string DefaultTemplate(ITextTokenizer tokenizer, string fallback = "alpaca") =>
        tokenizer.ChatTemplate is null ? fallback : TemplateCatalog.Model;

    /// <summary>The template's name as reports show it.</summary>
    public string TemplateName => format.Name;

    /// <summary>The text of the prompt.</summary>
    /// <exception cref="ChatFormatException">No messages, an unknown role, or the last message is not the user's.</exception>
    public string Render(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0) throw new ChatFormatException("messages: at least one message is required");
        for (int i = 0; i < messages.Count; i++)
            if (messages[i].Role is not (ChatMessage.System or ChatMessage.User or ChatMessage.Assistant))
                throw new ChatFormatException($"messages[{i}].role: '{messages[i].Role}' is not one of system, user, assistant");
        if (messages[^1].Role != ChatMessage.User) throw new ChatFormatException("messages: the last message must be the user's");
        if (format is ChatTemplateFormat chat) return chat.Render(messages, addGenerationPrompt: true);

        // An SFT template has no system role: the system text opens the first instruction. Earlier turns are written as
        // the template wrote training examples (prompt, then completion), one after the other.
        string system = string.Join("\n\n", messages.Where(m => m.Role == ChatMessage.System).Select(m => m.Content));
        var turns = messages.Where(m => m.Role != ChatMessage.System).ToList();
        var text = new System.Text.StringBuilder();
        string? pendingInstruction = null;
        bool first = true;
        string Instruction(string content)
        {
            string result = first && system.Length > 0 ? system + "\n\n" + content : content;
            first = false;
            return result;
        }
        for (int i = 0; i < turns.Count - 1; i++)
        {
            if (turns[i].Role == ChatMessage.User)
            {
                if (pendingInstruction is not null) text.Append(format.FormatPrompt(pendingInstruction));
                pendingInstruction = Instruction(turns[i].Content);
            }
            else
            {
                var (prompt, completion) = format.Format(pendingInstruction ?? Instruction(""), turns[i].Content);
                text.Append(prompt).Append(completion);
                pendingInstruction = null;
            }
        }
        if (pendingInstruction is not null) text.Append(format.FormatPrompt(pendingInstruction));
        text.Append(format.FormatPrompt(Instruction(turns[^1].Content)));
        return text.ToString();
    }

    /// <summary>The prompt's token ids, with the tokenizer's special tokens when the template wants them.</summary>
    public long[] Encode(IReadOnlyList<ChatMessage> messages) =>
        tokenizer.Encode(Render(messages), addSpecialTokens: format.AddSpecialTokens).Select(i => (long)i).ToArray();
}

/// <summary>A chat request that cannot be turned into a prompt; the message names the field.</summary>
public sealed class ChatFormatException(string message) : Exception(message);
