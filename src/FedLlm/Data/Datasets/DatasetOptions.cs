using FedLlm.Data.Templates;

namespace FedLlm.Data.Datasets;

/// <summary>Which columns of a generic instruction file hold what.</summary>
/// <param name="Instruction">The instruction column.</param>
/// <param name="Response">The response column.</param>
/// <param name="Input">An optional context column, joined to the instruction as OpenFedLLM's <c>alpaca_format</c> does.</param>
public sealed record ColumnMapping(string Instruction, string Response, string? Input = null);

/// <summary>Which string columns of a generic preference file hold what; the prompt is used as it is.</summary>
/// <param name="Prompt">The prompt column.</param>
/// <param name="Chosen">The preferred response column.</param>
/// <param name="Rejected">The dispreferred response column.</param>
public sealed record PreferenceColumnMapping(string Prompt = "prompt", string Chosen = "chosen", string Rejected = "rejected");

/// <summary>Options for <see cref="DatasetLoader"/>.</summary>
public sealed record DatasetLoadOptions
{
    /// <summary>The file format; <see cref="DataFileFormat.Auto"/> decides from the content.</summary>
    public DataFileFormat Format { get; init; } = DataFileFormat.Auto;

    /// <summary>Skip records that do not fit the schema, counting each in the <see cref="DataReadReport"/>.</summary>
    /// <remarks>A syntax error inside a JSON array and an unreadable Parquet file still throw: no later record can be found.</remarks>
    public bool SkipBad { get; init; }

    /// <summary>
    /// The column (or derived label, such as FinGPT's "sentiment") that gives each example its label; null for the
    /// kind's <see cref="DatasetKindInfo.DefaultLabel"/>, which may be none. A record without it is a bad record.
    /// </summary>
    public string? LabelColumn { get; init; }

    /// <summary>The columns of a <see cref="DatasetKind.Generic"/> file; required for that kind only.</summary>
    public ColumnMapping? Columns { get; init; }

    /// <summary>The columns of a <see cref="DatasetKind.GenericPreference"/> file.</summary>
    public PreferenceColumnMapping PreferenceColumns { get; init; } = new();

    /// <summary>How HH-RLHF and UltraFeedback prompts are rebuilt; OpenFedLLM's DPO default, vicuna v1.1, when null.</summary>
    public IConversationFormat? Conversation { get; init; }

    /// <summary>Remove MathInstruct rows whose <c>instruction</c> was seen before (OpenFedLLM does); on by default.</summary>
    public bool Deduplicate { get; init; } = true;
}

/// <summary>One loaded example and the label a partitioner may split by.</summary>
/// <typeparam name="T"><see cref="InstructionExample"/> or <see cref="PreferenceExample"/>.</typeparam>
/// <param name="Example">The example, preprocessed as OpenFedLLM does.</param>
/// <param name="Label">The value of the label column, or null when no label was asked for.</param>
public sealed record DatasetRow<T>(T Example, string? Label);
