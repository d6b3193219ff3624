namespace FedLlm.Data.Datasets;

/// <summary>The published data sets FedLlm reads in their own schemas, plus generic files with a column mapping.</summary>
/// <remarks>Strings (CLI names, hub ids) are parsed into this enum at the edge by <see cref="DatasetKinds.Parse"/>.</remarks>
public enum DatasetKind
{
    /// <summary>tatsu-lab/alpaca: <c>instruction</c>, <c>input</c>, <c>output</c> (and <c>text</c>, ignored).</summary>
    Alpaca,

    /// <summary>vicgalle/alpaca-gpt4: Alpaca's schema with GPT-4 outputs.</summary>
    AlpacaGpt4,

    /// <summary>FinGPT/fingpt-sentiment-train: Alpaca's schema; <c>output</c> is the sentiment.</summary>
    FinGptSentiment,

    /// <summary>medalpaca/medical_meadow_medical_flashcards: Alpaca's schema; the constant <c>instruction</c> is dropped.</summary>
    MedAlpaca,

    /// <summary>sahil2801/CodeAlpaca-20k (JSON) or lucasmccabe-lmi/CodeAlpaca-20k (Parquet): Alpaca's schema.</summary>
    CodeAlpaca,

    /// <summary>TIGER-Lab/MathInstruct: <c>source</c>, <c>output</c>, <c>instruction</c>; de-duplicated on <c>instruction</c>.</summary>
    MathInstruct,

    /// <summary>HuggingFaceH4/ultrafeedback_binarized: <c>prompt</c>, <c>chosen</c>/<c>rejected</c> message lists, scores.</summary>
    UltraFeedback,

    /// <summary>Anthropic/hh-rlhf: <c>chosen</c>/<c>rejected</c> dialogue strings with "\n\nHuman: "/"\n\nAssistant: " turns.</summary>
    HhRlhf,

    /// <summary>Any instruction file, read through a <see cref="ColumnMapping"/>.</summary>
    Generic,

    /// <summary>Any preference file with string prompt/chosen/rejected columns, read through a <see cref="PreferenceColumnMapping"/>.</summary>
    GenericPreference,
}

/// <summary>What is known about a <see cref="DatasetKind"/>: names, the kind of examples it gives, its default label.</summary>
/// <param name="Kind">The kind.</param>
/// <param name="Name">The CLI name, e.g. "fingpt-sentiment".</param>
/// <param name="HubIds">The Hugging Face ids whose files this kind reads (also accepted by <see cref="DatasetKinds.Parse"/>).</param>
/// <param name="IsPreference">True when the examples are <see cref="PreferenceExample"/>s, else <see cref="InstructionExample"/>s.</param>
/// <param name="DefaultLabel">The label that label-based partitions use when none is named, or null.</param>
public sealed record DatasetKindInfo(DatasetKind Kind, string Name, IReadOnlyList<string> HubIds, bool IsPreference, string? DefaultLabel);

/// <summary>The catalogue of <see cref="DatasetKind"/>s, and parsing at the CLI/config edge.</summary>
public static class DatasetKinds
{
    /// <summary>
    /// FinGPT's derived label: the sentiment's polarity (negative, neutral or positive) read from <c>output</c>, which
    /// also holds graded values such as "moderately positive"; the raw value stays available as the label "output".
    /// </summary>
    public const string SentimentLabel = "sentiment";

    /// <summary>All kinds, in enum order.</summary>
    public static IReadOnlyList<DatasetKindInfo> All { get; } =
    [
        new(DatasetKind.Alpaca, "alpaca", ["tatsu-lab/alpaca"], false, null),
        new(DatasetKind.AlpacaGpt4, "alpaca-gpt4", ["vicgalle/alpaca-gpt4"], false, null),
        new(DatasetKind.FinGptSentiment, "fingpt-sentiment", ["FinGPT/fingpt-sentiment-train"], false, SentimentLabel),
        new(DatasetKind.MedAlpaca, "medalpaca", ["medalpaca/medical_meadow_medical_flashcards"], false, null),
        new(DatasetKind.CodeAlpaca, "code-alpaca", ["sahil2801/CodeAlpaca-20k", "lucasmccabe-lmi/CodeAlpaca-20k"], false, null),
        new(DatasetKind.MathInstruct, "mathinstruct", ["TIGER-Lab/MathInstruct"], false, "source"),
        new(DatasetKind.UltraFeedback, "ultrafeedback", ["HuggingFaceH4/ultrafeedback_binarized"], true, null),
        new(DatasetKind.HhRlhf, "hh-rlhf", ["Anthropic/hh-rlhf"], true, null),
        new(DatasetKind.Generic, "generic", [], false, null),
        new(DatasetKind.GenericPreference, "generic-preference", [], true, null),
    ];

    /// <summary>The information about one kind.</summary>
    public static DatasetKindInfo Info(this DatasetKind kind) => All[(int)kind];

    /// <summary>
    /// Parses a CLI name ("fingpt-sentiment"), an enum name ("FinGptSentiment") or a hub id
    /// ("FinGPT/fingpt-sentiment-train"), ignoring case.
    /// </summary>
    /// <exception cref="ArgumentException">Nothing matches; the message lists the names.</exception>
    public static DatasetKind Parse(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        foreach (var info in All)
        {
            if (string.Equals(info.Name, name, StringComparison.OrdinalIgnoreCase)
                || string.Equals(info.Kind.ToString(), name, StringComparison.OrdinalIgnoreCase)
                || info.HubIds.Any(id => string.Equals(id, name, StringComparison.OrdinalIgnoreCase)))
                return info.Kind;
        }

        throw new ArgumentException($"Unknown dataset '{name}'. Known: {string.Join(", ", All.Select(i => i.Name))} (or a hub id such as {All[0].HubIds[0]}).", nameof(name));
    }
}
