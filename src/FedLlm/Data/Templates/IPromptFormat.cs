namespace FedLlm.Data.Templates;

/// <summary>
/// How one instruction and its response become training text for SFT, split where the loss starts.
/// </summary>
/// <remarks>
/// <para>The prompt is everything masked from the loss (and what generation is given); the completion is everything
/// trained on: the response and whatever ends the assistant's turn in this format.</para>
/// <para><see cref="Header"/> and <see cref="AfterInstruction"/> are the fixed text around the instruction in the
/// prompt; <see cref="SftExampleBuilder"/> protects their tokens when it truncates a long instruction.</para>
/// <para>Implementations are immutable and thread-safe.</para>
/// </remarks>
public interface IPromptFormat
{
    /// <summary>The name the CLI looks the format up by.</summary>
    string Name { get; }

    /// <summary>Text of the prompt before the instruction.</summary>
    string Header { get; }

    /// <summary>Text of the prompt after the instruction, ending where the response starts.</summary>
    string AfterInstruction { get; }

    /// <summary>
    /// Whether the tokenizer's post-processor should add its special tokens (BOS). False for formats whose text already
    /// holds them, as a chat template's <c>bos_token</c> does (Hugging Face's <c>apply_chat_template</c> encodes
    /// without special tokens for the same reason).
    /// </summary>
    bool AddSpecialTokens { get; }

    /// <summary>
    /// Whether the tokenizer's EOS id is appended after the completion. False when the completion already ends with
    /// the format's own end-of-turn token (&lt;|eot_id|&gt;, &lt;|im_end|&gt;), which is then what the model learns to stop on.
    /// </summary>
    bool AppendEos { get; }

    /// <summary>The prompt: everything masked from the loss.</summary>
    string FormatPrompt(string instruction);

    /// <summary>The prompt and the completion that follows it; prompt + completion is the training text.</summary>
    (string Prompt, string Completion) Format(string instruction, string response);
}
