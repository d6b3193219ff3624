using FedLlm.Runtime;
using System.Text.Encodings.Web;
using System.Text.Json;
using FedLlm.Data;

namespace FedLlm.Defaults;

/// <summary>
/// The embedded default preference set: the financial-sentiment headlines of <see cref="FinancialSentimentDataset"/>
/// turned into DPO pairs, so that <c>fedllm train --task dpo</c> has data a new user can run on at once.
/// </summary>
/// <remarks>
/// <para>Each pair's prompt is the sentiment instruction and headline rendered with <see cref="PromptTemplate.Alpaca"/>
/// (exactly the SFT prompt); chosen is " " + the correct label, rejected is " " + one of the two wrong labels, picked by a
/// SplitMix64 stream of its own so the SFT data's stream is untouched.</para>
/// <para>The held-out pairs are built from the held-out headlines, so they share neither companies nor (move, event)
/// pairings with training. Generation is a pure function of the sentiment data set and the seed given to <see cref="Generate"/>.</para>
/// </remarks>
public sealed class SentimentPreferenceDataset
{
    /// <summary>File name of the training pairs.</summary>
    public const string TrainFileName = "preference-train.jsonl";

    /// <summary>File name of the held-out pairs.</summary>
    public const string EvalFileName = "preference-eval.jsonl";

    /// <summary>Seed of the wrong-label stream (not the headlines' seed, so the two streams never coincide).</summary>
    public const ulong DefaultSeed = 2024;

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private SentimentPreferenceDataset(IReadOnlyList<PreferenceExample> train, IReadOnlyList<PreferenceExample> eval)
    {
        Train = train;
        Eval = eval;
    }

    /// <summary>Training pairs, one per training headline, in the headlines' order.</summary>
    public IReadOnlyList<PreferenceExample> Train { get; }

    /// <summary>Held-out pairs, one per held-out headline.</summary>
    public IReadOnlyList<PreferenceExample> Eval { get; }

    /// <summary>Builds the pairs from a sentiment data set (default: the embedded one).</summary>
    public static SentimentPreferenceDataset Generate(FinancialSentimentDataset? headlines = null, ulong seed = DefaultSeed)
    {
        headlines ??= FinancialSentimentDataset.Generate();
        var rng = new SplitMix64(seed);
        // Training first, then held-out: a fixed draw order keeps the bytes stable.
        var train = headlines.Train.Select(h => ToPair(h, rng)).ToList();
        var eval = headlines.Eval.Select(h => ToPair(h, rng)).ToList();
        return new SentimentPreferenceDataset(train, eval);
    }

    /// <summary>The prompt of a headline: the SFT prompt (instruction + " " + headline, Alpaca template).</summary>
    public static string Prompt(SentimentHeadline headline)
    {
        ArgumentNullException.ThrowIfNull(headline);
        return PromptTemplate.Alpaca.FormatPrompt(headline.ToAlpacaRecord().ToInstructionExample().Instruction);
    }

    static PreferenceExample ToPair(SentimentHeadline h, SplitMix64 rng)
    {
        // One of the two other labels: offset 1 or 2 modulo 3.
        var wrong = (SentimentLabel)(((int)h.Label + 1 + rng.NextInt(2)) % 3);
        return new PreferenceExample(Prompt(h),
            " " + FinancialSentimentDataset.LabelText(h.Label),
            " " + FinancialSentimentDataset.LabelText(wrong));
    }

    /// <summary>Writes <see cref="TrainFileName"/> and <see cref="EvalFileName"/> as generic {prompt, chosen, rejected} JSON Lines.</summary>
    /// <returns>The paths written.</returns>
    public SentimentDataFiles Write(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        var files = new SentimentDataFiles(Path.Combine(directory, TrainFileName), Path.Combine(directory, EvalFileName));
        WriteJsonl(files.TrainPath, Train);
        WriteJsonl(files.EvalPath, Eval);
        return files;
    }

    /// <summary>One object per line, keys prompt, chosen, rejected, "\n" line ends, UTF-8 without BOM.</summary>
    public static void WriteJsonl(string path, IEnumerable<PreferenceExample> examples)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(examples);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        var line = new MemoryStream();
        foreach (var example in examples)
        {
            line.SetLength(0);
            using (var writer = new Utf8JsonWriter(line, WriterOptions))
            {
                writer.WriteStartObject();
                writer.WriteString("prompt", example.Prompt);
                writer.WriteString("chosen", example.Chosen);
                writer.WriteString("rejected", example.Rejected);
                writer.WriteEndObject();
            }
            line.WriteByte((byte)'\n');
            file.Write(line.GetBuffer(), 0, (int)line.Length);
        }
    }
}
