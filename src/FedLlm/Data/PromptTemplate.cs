using FedLlm.Data.Templates;

namespace FedLlm.Data;

/// <summary>
/// An SFT prompt template: how an instruction and a response become one training text, and where the loss starts.
/// </summary>
/// <remarks>
/// <para>The full text is <c>Header + instruction + AfterInstruction + ResponseSeparator + response + EndOfTurn + eos</c>.
/// <see cref="AfterInstruction"/> ends with <see cref="ResponseTemplate"/>, the marker after which OpenFedLLM (via TRL's
/// DataCollatorForCompletionOnlyLM) computes the loss. Splitting the text at the end of that marker gives the prompt
/// (<see cref="FormatPrompt"/>, also the generation prompt) and the completion (<see cref="FormatCompletion"/>).</para>
/// <para>The built-in alpaca and vicuna templates reproduce OpenFedLLM's utils/template.py (commit 14c6af2) character
/// for character. chatml and llama-3 are those formats' canonical single-turn layouts (see <see cref="HeaderTurnConversation"/>);
/// they end the response with their end-of-turn token instead of the tokenizer's EOS.</para>
/// </remarks>
public sealed class PromptTemplate : IPromptFormat
{
    /// <summary>Creates a template.</summary>
    /// <param name="name">Lookup name at the CLI edge, e.g. "alpaca".</param>
    /// <param name="header">Text before the instruction.</param>
    /// <param name="afterInstruction">Text between the instruction and the response; must end with <paramref name="responseTemplate"/>.</param>
    /// <param name="responseTemplate">The marker after which the loss is computed.</param>
    /// <param name="responseSeparator">Text between the marker and the response (part of the completion, so it is trained on).</param>
    /// <param name="endOfTurn">Text after the response that ends the assistant's turn (e.g. "&lt;|eot_id|&gt;"), trained on;
    /// when set, the tokenizer's EOS is not appended as well. Empty for OpenFedLLM's templates, which end with EOS.</param>
    /// <exception cref="ArgumentException"><paramref name="afterInstruction"/> does not end with <paramref name="responseTemplate"/>.</exception>
    public PromptTemplate(string name, string header, string afterInstruction, string responseTemplate, string responseSeparator, string endOfTurn = "")
    {
        ArgumentNullException.ThrowIfNull(endOfTurn);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(afterInstruction);
        ArgumentException.ThrowIfNullOrEmpty(responseTemplate);
        ArgumentNullException.ThrowIfNull(responseSeparator);
        if (!afterInstruction.EndsWith(responseTemplate, StringComparison.Ordinal))
            throw new ArgumentException(
                $"The text after the instruction must end with the response template '{responseTemplate}', so the prompt ends where the loss starts.",
                nameof(afterInstruction));
        Name = name;
        Header = header;
        AfterInstruction = afterInstruction;
        ResponseTemplate = responseTemplate;
        ResponseSeparator = responseSeparator;
        EndOfTurn = endOfTurn;
    }

    /// <summary>OpenFedLLM's 'alpaca' template (its default; note the space after the instruction).</summary>
    public static PromptTemplate Alpaca { get; } = new(
        "alpaca",
        header: "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n",
        afterInstruction: " \n\n### Response:",
        responseTemplate: "\n### Response:",
        responseSeparator: " ");

    /// <summary>OpenFedLLM's 'vicuna' SFT template (vicuna v1.1 system message, one turn).</summary>
    public static PromptTemplate Vicuna { get; } = new(
        "vicuna",
        header: "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: ",
        afterInstruction: " ASSISTANT:",
        responseTemplate: " ASSISTANT:",
        responseSeparator: " ");

    /// <summary>ChatML, single turn: <c>&lt;|im_start|&gt;user\n{instruction}&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n{response}&lt;|im_end|&gt;</c>.</summary>
    public static PromptTemplate ChatMl { get; } = HeaderTurnConversation.ChatMl.ToPromptTemplate();

    /// <summary>Llama 3, single turn: user header, instruction, &lt;|eot_id|&gt;, assistant header, response, &lt;|eot_id|&gt;.</summary>
    /// <remarks>BOS (&lt;|begin_of_text|&gt;) comes from the Llama 3 tokenizer's post-processor, not from the text.</remarks>
    public static PromptTemplate Llama3 { get; } = HeaderTurnConversation.Llama3.ToPromptTemplate();

    /// <summary>The built-in templates, for listing at the CLI.</summary>
    public static IReadOnlyList<PromptTemplate> BuiltIn { get; } = [Alpaca, Vicuna, ChatMl, Llama3];

    /// <summary>The name the CLI looks the template up by.</summary>
    public string Name { get; }

    /// <summary>Text before the instruction.</summary>
    public string Header { get; }

    /// <summary>Text between the instruction and the response separator; ends with <see cref="ResponseTemplate"/>.</summary>
    public string AfterInstruction { get; }

    /// <summary>The response marker: everything up to and including it is masked from the loss.</summary>
    public string ResponseTemplate { get; }

    /// <summary>Text between the marker and the response.</summary>
    public string ResponseSeparator { get; }

    /// <summary>Text that ends the assistant's turn after the response; empty when the tokenizer's EOS does.</summary>
    public string EndOfTurn { get; }

    /// <inheritdoc />
    /// <remarks>True: these templates hold no BOS of their own, so the tokenizer adds it as in OpenFedLLM.</remarks>
    public bool AddSpecialTokens => true;

    /// <inheritdoc />
    public bool AppendEos => EndOfTurn.Length == 0;

    /// <summary>Looks a built-in template up by name (ordinal, case-insensitive). For the CLI/config edge only.</summary>
    /// <remarks>"llama3" is accepted for llama-3. "vicuna_v1.1" is not a template name here: in OpenFedLLM it names the
    /// FastChat conversation used for DPO prompts (<see cref="VicunaConversation"/>), not the SFT template.</remarks>
    /// <exception cref="ArgumentException">No built-in template has that name; the message lists the known names.</exception>
    public static PromptTemplate FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var canonical = name.ToLowerInvariant() switch
        {
            "llama3" or "llama_3" => "llama-3",
            _ => name,
        };
        return BuiltIn.FirstOrDefault(t => string.Equals(t.Name, canonical, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException(
                $"Unknown prompt template '{name}'. Known: {string.Join(", ", BuiltIn.Select(t => t.Name))}.", nameof(name));
    }

    /// <summary>The prompt: everything the loss is masked on, ending with <see cref="ResponseTemplate"/>.</summary>
    /// <remarks>Equals OpenFedLLM's generation prompt <c>template.format(q, "", "")[:-1]</c>.</remarks>
    public string FormatPrompt(string instruction)
    {
        ArgumentNullException.ThrowIfNull(instruction);
        return Header + instruction + AfterInstruction;
    }

    /// <summary>The completion: separator, response and the EOS text (empty when EOS is appended as an id instead).</summary>
    public string FormatCompletion(string response, string eos = "")
    {
        ArgumentNullException.ThrowIfNull(response);
        ArgumentNullException.ThrowIfNull(eos);
        return ResponseSeparator + response + EndOfTurn + eos;
    }

    /// <inheritdoc />
    public (string Prompt, string Completion) Format(string instruction, string response) =>
        (FormatPrompt(instruction), FormatCompletion(response));

    /// <summary>The whole training text, as OpenFedLLM's <c>formatting_prompts_func</c> builds it.</summary>
    public string Format(string instruction, string response, string eos) => FormatPrompt(instruction) + FormatCompletion(response, eos);

    /// <inheritdoc />
    public override string ToString() => Name;
}
