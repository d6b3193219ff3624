using System.Text;
using FedLlm.Data.Templates;

namespace FedLlm.Data.Datasets;

/// <summary>
/// Turns an Anthropic/hh-rlhf pair of whole dialogues into a <see cref="PreferenceExample"/> exactly as OpenFedLLM's
/// <c>split_hh</c> (utils/process_dataset.py) does.
/// </summary>
/// <remarks>
/// <para>hh-rlhf stores each side as the whole dialogue, "\n\nHuman: ...\n\nAssistant: ...", differing only in the
/// last assistant turn. The prompt is their longest common prefix (by character, as Python compares strings): its first
/// nine characters ("\n\nHuman: ") are dropped, then it is cut alternately at "\n\nAssistant: " and "\n\nHuman: " into
/// user and assistant turns, which are rendered by the conversation format with a trailing generation header. Text
/// after the last separator is dropped, as in the reference.</para>
/// <para>Each response is its side from one character before the end of the common prefix, so it keeps the space
/// after "Assistant:". Kept on purpose for comparable results: when both responses start with the same characters
/// (both "I ..."), those characters are in the common prefix and are lost from both responses, exactly as in
/// OpenFedLLM.</para>
/// </remarks>
public static class HhRlhfSplitter
{
    private const string HumanSeparator = "\n\nHuman: ";
    private const string AssistantSeparator = "\n\nAssistant: ";

    /// <summary>Splits one pair.</summary>
    /// <param name="chosen">The preferred dialogue.</param>
    /// <param name="rejected">The dispreferred dialogue.</param>
    /// <param name="format">How the turns are rendered; OpenFedLLM uses vicuna v1.1.</param>
    /// <exception cref="FormatException">The dialogues do not start with "\n\nHuman: ", so no turn can be found
    /// (OpenFedLLM would cut nine characters off whatever is there).</exception>
    public static PreferenceExample Split(string chosen, string rejected, IConversationFormat format)
    {
        ArgumentNullException.ThrowIfNull(chosen);
        ArgumentNullException.ThrowIfNull(rejected);
        ArgumentNullException.ThrowIfNull(format);
        var common = CommonPrefixLength(chosen, rejected);
        if (common < HumanSeparator.Length || !chosen.StartsWith(HumanSeparator, StringComparison.Ordinal))
            throw new FormatException("the dialogues do not share a leading \"\\n\\nHuman: \" turn");

        var turns = new List<ChatMessage>();
        var sentence = chosen.AsSpan(HumanSeparator.Length, common - HumanSeparator.Length);
        var userTurn = true;
        while (true)
        {
            var separator = userTurn ? AssistantSeparator : HumanSeparator;
            var index = sentence.IndexOf(separator, StringComparison.Ordinal);
            if (index < 0) break;
            turns.Add(new ChatMessage(userTurn ? ChatMessage.User : ChatMessage.Assistant, sentence[..index].ToString()));
            sentence = sentence[(index + separator.Length)..];
            userTurn = !userTurn;
        }

        // Python's text[len(common) - 1:] steps back one code point, which is two UTF-16 units for a surrogate pair.
        var start = common - (common >= 2 && char.IsLowSurrogate(chosen[common - 1]) && char.IsHighSurrogate(chosen[common - 2]) ? 2 : 1);
        return new PreferenceExample(format.FormatPrompt(turns), chosen[start..], rejected[start..]);
    }

    /// <summary>The common prefix in UTF-16 units, never ending inside a surrogate pair (Python compares code points).</summary>
    internal static int CommonPrefixLength(string a, string b)
    {
        var n = Math.Min(a.Length, b.Length);
        var i = 0;
        while (i < n && a[i] == b[i]) i++;
        if (i > 0 && i < n && char.IsHighSurrogate(a[i - 1])) i--;
        return i;
    }
}
