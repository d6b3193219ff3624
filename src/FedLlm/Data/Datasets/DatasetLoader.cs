using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using FedLlm.Data.Templates;

namespace FedLlm.Data.Datasets;

/// <summary>
/// Streams the published data sets from local JSON, JSON Lines (optionally .gz) and Parquet files in their real
/// schemas, preprocessed exactly as OpenFedLLM's utils/process_dataset.py (commit 14c6af2) does, so results compare.
/// </summary>
/// <remarks>
/// <para><b>Preprocessing per kind.</b> Alpaca, Alpaca-GPT4, CodeAlpaca and FinGPT sentiment: <c>alpaca_format</c>
/// (the instruction, plus " " + input when input is not the empty string; the response is <c>output</c>).
/// MedAlpaca: the constant <c>instruction</c> is dropped, <c>input</c> is the instruction, <c>output</c> the response.
/// MathInstruct: rows whose <c>instruction</c> occurred earlier are removed (pandas <c>drop_duplicates</c> keeps the
/// first), counted in <see cref="DataReadReport.RecordsDeduplicated"/>. HH-RLHF: see <see cref="HhRlhfSplitter"/>.
/// UltraFeedback: the prompt is the user's <c>prompt</c> rendered as one user turn with a generation header; each
/// response is " " + the content of message 1 of <c>chosen</c> / <c>rejected</c> (the assistant's reply).</para>
/// <para><b>Not done here.</b> OpenFedLLM then shuffles with seed 2023 and keeps the first 20,000 examples; that is the
/// caller's choice (a partitioner shuffles with its own seed), since HF's NumPy-PCG64 permutation cannot be reproduced
/// bit for bit anyway.</para>
/// <para><b>Memory</b> is bounded by the record reader (one line, buffer or Parquet row group) plus, for MathInstruct,
/// a 16-byte hash per distinct instruction (SHA-256, truncated; a collision has odds near 2^-100 for a million rows).</para>
/// <para>Every record read is either returned, counted as skipped (with skip-bad) or counted as a duplicate: nothing is
/// dropped unseen.</para>
/// </remarks>
public static class DatasetLoader
{
    /// <summary>Streams an instruction (SFT) data set.</summary>
    /// <param name="kind">A kind whose <see cref="DatasetKindInfo.IsPreference"/> is false.</param>
    /// <param name="path">The file.</param>
    /// <param name="options">Format, skip-bad, label and column choices; defaults when null.</param>
    /// <param name="report">Receives the counts; required with <see cref="DatasetLoadOptions.SkipBad"/>.</param>
    /// <param name="cancellationToken">Stops the read between records.</param>
    /// <exception cref="DataFormatException">A record does not fit the schema and skip-bad is off.</exception>
    public static IEnumerable<DatasetRow<InstructionExample>> ReadInstructions(
        DatasetKind kind, string path, DatasetLoadOptions? options = null, DataReadReport? report = null, CancellationToken cancellationToken = default)
    {
        options ??= new DatasetLoadOptions();
        Validate(kind, path, options, report, preference: false);
        return ReadAsync(path, options, report, InstructionMapper(kind, options), Labeler(kind, options), cancellationToken)
            .ToBlockingEnumerable(cancellationToken);
    }

    /// <summary>Streams a preference (DPO) data set.</summary>
    /// <inheritdoc cref="ReadInstructions" path="/param"/>
    /// <exception cref="DataFormatException">A record does not fit the schema and skip-bad is off.</exception>
    public static IEnumerable<DatasetRow<PreferenceExample>> ReadPreferences(
        DatasetKind kind, string path, DatasetLoadOptions? options = null, DataReadReport? report = null, CancellationToken cancellationToken = default)
    {
        options ??= new DatasetLoadOptions();
        Validate(kind, path, options, report, preference: true);
        return ReadAsync(path, options, report, PreferenceMapper(kind, options), Labeler(kind, options), cancellationToken)
            .ToBlockingEnumerable(cancellationToken);
    }

    private static void Validate(DatasetKind kind, string path, DatasetLoadOptions options, DataReadReport? report, bool preference)
    {
        // Checked at the call, not at the first MoveNext, so a wrong call fails where it is made.
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (options.SkipBad && report is null)
            throw new ArgumentException("SkipBad needs a DataReadReport to count the skipped records in.", nameof(report));
        var info = kind.Info();
        if (info.IsPreference != preference)
            throw new ArgumentException(
                $"{info.Name} holds {(info.IsPreference ? "preference" : "instruction")} examples; use {(info.IsPreference ? nameof(ReadPreferences) : nameof(ReadInstructions))}.",
                nameof(kind));
        if (kind == DatasetKind.Generic && options.Columns is null)
            throw new ArgumentException("A generic data set needs a ColumnMapping (instruction and response columns).", nameof(options));
    }

    private static async IAsyncEnumerable<DatasetRow<T>> ReadAsync<T>(
        string path, DatasetLoadOptions options, DataReadReport? report,
        Func<DataRecord, T?> map, Func<DataRecord, string?> label, [EnumeratorCancellation] CancellationToken ct)
        where T : class
    {
        var read = 0;
        DataFormatException? firstSkipped = null;
        await foreach (var result in DataRecordReader.ReadAsync(path, options.Format, ct))
        {
            T? example;
            string? labelValue;
            try
            {
                if (result.Error is not null) throw result.Error;
                example = map(result.Record!);
                labelValue = example is null ? null : label(result.Record!);
            }
            catch (DataFormatException e)
            {
                if (!options.SkipBad) throw;
                report!.CountSkipped(e);
                firstSkipped ??= e;
                continue;
            }

            if (example is null)
            {
                report?.CountDeduplicated();
                continue;
            }

            read++;
            report?.CountRead();
            yield return new DatasetRow<T>(example, labelValue);
        }

        if (read == 0) throw DataFormatException.NothingUsable(path, firstSkipped);
    }

    /// <summary>Maps a record to an example, or to null for a row that preprocessing removes (a duplicate).</summary>
    private static Func<DataRecord, InstructionExample?> InstructionMapper(DatasetKind kind, DatasetLoadOptions options)
    {
        switch (kind)
        {
            case DatasetKind.Alpaca or DatasetKind.AlpacaGpt4 or DatasetKind.CodeAlpaca or DatasetKind.FinGptSentiment:
                return r => AlpacaFormat(r, "instruction", "input", "output");
            case DatasetKind.MedAlpaca:
                // OpenFedLLM drops the constant instruction ("Answer this question truthfully") and asks the question itself.
                return r => new InstructionExample(RecordFields.String(r, "input"), RecordFields.String(r, "output"));
            case DatasetKind.MathInstruct:
                var seen = new HashSet<UInt128>();
                return r =>
                {
                    var instruction = RecordFields.String(r, "instruction");
                    var response = RecordFields.String(r, "output");
                    return !options.Deduplicate || seen.Add(Hash(instruction)) ? new InstructionExample(instruction, response) : null;
                };
            case DatasetKind.Generic:
                var columns = options.Columns!;
                return r => AlpacaFormat(r, columns.Instruction, columns.Input, columns.Response);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "not an instruction data set");
        }
    }

    private static Func<DataRecord, PreferenceExample?> PreferenceMapper(DatasetKind kind, DatasetLoadOptions options)
    {
        var format = options.Conversation ?? VicunaConversation.Instance;
        switch (kind)
        {
            case DatasetKind.HhRlhf:
                return r =>
                {
                    var chosen = RecordFields.String(r, "chosen");
                    var rejected = RecordFields.String(r, "rejected");
                    try
                    {
                        return HhRlhfSplitter.Split(chosen, rejected, format);
                    }
                    catch (FormatException e)
                    {
                        throw r.Location.Error("chosen", e.Message, e);
                    }
                };
            case DatasetKind.UltraFeedback:
                return r =>
                {
                    var prompt = format.FormatPrompt([new ChatMessage(ChatMessage.User, RecordFields.String(r, "prompt"))]);
                    return new PreferenceExample(prompt, " " + AssistantReply(r, "chosen"), " " + AssistantReply(r, "rejected"));
                };
            case DatasetKind.GenericPreference:
                var columns = options.PreferenceColumns;
                return r => new PreferenceExample(
                    RecordFields.String(r, columns.Prompt), RecordFields.String(r, columns.Chosen), RecordFields.String(r, columns.Rejected));
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a preference data set");
        }
    }

    /// <summary>OpenFedLLM's <c>alpaca_format</c>: the input joins the instruction after a space unless it is "".</summary>
    private static InstructionExample AlpacaFormat(DataRecord r, string instructionColumn, string? inputColumn, string outputColumn)
    {
        var instruction = RecordFields.String(r, instructionColumn);
        var input = inputColumn is null ? "" : RecordFields.String(r, inputColumn);
        var output = RecordFields.String(r, outputColumn);
        return new AlpacaRecord(instruction, input, output).ToInstructionExample();
    }

    /// <summary>UltraFeedback's <c>chosen[1]["content"]</c>: message 1 of the list is the assistant's reply.</summary>
    private static string AssistantReply(DataRecord r, string column)
    {
        var messages = RecordFields.Array(r, column);
        if (messages.Count < 2)
            throw r.Location.Error(column, $"expected a [user, assistant] message list, got {messages.Count} message(s)");
        if (messages[1] is not System.Text.Json.Nodes.JsonObject reply
            || !reply.TryGetPropertyValue("content", out var content)
            || DataRecordReader.KindOf(content) != System.Text.Json.JsonValueKind.String)
            throw r.Location.Error(column, "message 1 has no string 'content'");
        return content!.GetValue<string>();
    }

    private static Func<DataRecord, string?> Labeler(DatasetKind kind, DatasetLoadOptions options)
    {
        var name = options.LabelColumn ?? kind.Info().DefaultLabel;
        if (name is null) return _ => null;
        if (kind == DatasetKind.FinGptSentiment && name == DatasetKinds.SentimentLabel)
            return r => Polarity(r);
        return r => RecordFields.Label(r, name);
    }

    /// <summary>FinGPT's sentiment polarity: its outputs are graded ("mildly positive", "strong negative"...).</summary>
    private static string Polarity(DataRecord r)
    {
        var output = RecordFields.String(r, "output").Trim().ToLowerInvariant();
        if (output.Contains("negative", StringComparison.Ordinal)) return "negative";
        if (output.Contains("positive", StringComparison.Ordinal)) return "positive";
        if (output.Contains("neutral", StringComparison.Ordinal)) return "neutral";
        throw r.Location.Error("output", $"'{output}' is not a sentiment (negative, neutral or positive)");
    }

    private static UInt128 Hash(string text)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(text), digest);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(digest);
    }
}
