using System.Text;
using FedLlm.Data;
using FedLlm.Evaluation.Data;
using FedLlm.Evaluation.Metrics;

namespace FedLlm.Evaluation.Tasks;

/// <summary>One labelled text of a sentiment benchmark, with the instruction FinGPT poses it with.</summary>
public sealed record SentimentItem(string Instruction, string Input, string Label);

/// <summary>
/// Loads FinGPT's four sentiment benchmarks from their published files, mapped to negative/neutral/positive and
/// split as FinGPT's benchmark scripts split them (fingpt/FinGPT_Benchmark/benchmarks/{fpb,fiqa,tfns,nwgi}.py).
/// </summary>
public static class SentimentSources
{
    /// <summary>FinGPT's instruction for news sentences and headlines (FPB, FiQA-SA headlines, NWGI).</summary>
    public const string NewsInstruction = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.";

    /// <summary>FinGPT's instruction for tweets and posts (TFNS, FiQA-SA posts).</summary>
    public const string TweetInstruction = "What is the sentiment of this tweet? Please choose an answer from {negative/neutral/positive}.";

    /// <summary>FinGPT's seed for every train_test_split.</summary>
    public const ulong SplitSeed = 42;

    /// <summary>
    /// Financial PhraseBank, sentences_50agree: the published text file (<c>Sentences_50Agree.txt</c>, latin-1,
    /// "sentence@label" per line) or the Hugging Face layout (sentence, label 0/1/2 = negative/neutral/positive).
    /// With <paramref name="fingptSplit"/>, FinGPT's test set: <c>train_test_split(seed=42)["test"]</c> (25%).
    /// </summary>
    public static IReadOnlyList<SentimentItem> Fpb(string path, bool fingptSplit)
    {
        List<SentimentItem> rows;
        if (path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase))
        {
            rows = [];
            var lines = File.ReadAllLines(path, Encoding.Latin1);
            for (int i = 0; i < lines.Length; i++)
            {
                if (lines[i].Trim().Length == 0) continue;
                int at = lines[i].LastIndexOf('@');
                if (at < 0) throw new DataFormatException(path, i + 1, null, null, "expected 'sentence@label'");
                string label;
                try { label = FinGptSentiment.FpbWord(lines[i][(at + 1)..]); }
                catch (FormatException e) { throw new DataFormatException(path, i + 1, null, "label", e.Message, e); }
                rows.Add(new SentimentItem(NewsInstruction, lines[i][..at], label));
            }
        }
        else
        {
            rows = EvaluationRecords.ReadAll(path).Select(r => new SentimentItem(NewsInstruction, EvaluationRecords.String(r, "sentence"),
                MapLabel(r, "label", l => FinGptSentiment.FpbLabel(EvaluationRecords.Int(r, l))))).ToList();
        }
        return fingptSplit ? TestSplit(rows, 0.25) : rows;
    }

    /// <summary>
    /// FiQA-SA as pauri32/fiqa-2018 (sentence, sentiment_score, format): a file, or a folder whose train, validation and
    /// test files are concatenated in that order as FinGPT does before <c>train_test_split(0.226, seed=42)</c>.
    /// Scores map to negative (&lt; −0.1), neutral, positive (≥ 0.1); "post" rows get the tweet instruction.
    /// </summary>
    public static IReadOnlyList<SentimentItem> Fiqa(string path, bool fingptSplit)
    {
        var files = Directory.Exists(path) ? SplitFiles(path, ["train", "valid", "test"]) : [path];
        var rows = files.SelectMany(EvaluationRecords.ReadAll).Select(r => new SentimentItem(
            EvaluationRecords.OptionalString(r, "format") == "post" ? TweetInstruction : NewsInstruction,
            EvaluationRecords.String(r, "sentence"),
            FinGptSentiment.FiqaLabel(EvaluationRecords.Double(r, "sentiment_score")))).ToList();
        return fingptSplit ? TestSplit(rows, 0.226) : rows;
    }

    /// <summary>
    /// Twitter Financial News Sentiment (zeroshot/twitter-financial-news-sentiment), FinGPT scores its validation split:
    /// the published CSV (header text,label) or Parquet/JSONL (text, label). Labels 0/1/2 = negative/positive/neutral.
    /// </summary>
    public static IReadOnlyList<SentimentItem> Tfns(string path)
    {
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            var rows = CsvRows.Read(path);
            if (rows.Count == 0) throw new DataFormatException(path, null, null, null, "the file is empty");
            var header = rows[0].Fields.ToList();
            int text = header.IndexOf("text"), label = header.IndexOf("label");
            if (text < 0 || label < 0) throw new DataFormatException(path, 1, null, null, "the header needs the columns text and label");
            return rows.Skip(1).Select(r =>
            {
                if (r.Fields.Count != header.Count) throw new DataFormatException(path, r.Line, null, null, $"expected {header.Count} columns, got {r.Fields.Count}");
                if (!int.TryParse(r.Fields[label], out int l)) throw new DataFormatException(path, r.Line, null, "label", $"'{r.Fields[label]}' is not 0, 1 or 2");
                try { return new SentimentItem(TweetInstruction, r.Fields[text], FinGptSentiment.TfnsLabel(l)); }
                catch (FormatException e) { throw new DataFormatException(path, r.Line, null, "label", e.Message, e); }
            }).ToList();
        }
        return EvaluationRecords.ReadAll(path).Select(r => new SentimentItem(TweetInstruction, EvaluationRecords.String(r, "text"),
            MapLabel(r, "label", l => FinGptSentiment.TfnsLabel(EvaluationRecords.Int(r, l))))).ToList();
    }

    /// <summary>NWGI (oliverwang15/news_with_gpt_instructions, test split): news, label "strong positive"… .</summary>
    public static IReadOnlyList<SentimentItem> Nwgi(string path) => EvaluationRecords.ReadAll(path).Select(r =>
        new SentimentItem(NewsInstruction, EvaluationRecords.String(r, "news"),
            MapLabel(r, "label", l => FinGptSentiment.NwgiLabel(EvaluationRecords.String(r, l))))).ToList();

    /// <summary>
    /// Instruction data in FinGPT's sentiment layout (fingpt-sentiment-train, the embedded default's held-out set):
    /// instruction, input, output; the label is <see cref="FinGptSentiment.Normalize"/> of the output, as FinGPT does.
    /// </summary>
    public static IReadOnlyList<SentimentItem> Instructions(string path) => EvaluationRecords.ReadAll(path).Select(r =>
        new SentimentItem(EvaluationRecords.String(r, "instruction"), EvaluationRecords.OptionalString(r, "input") ?? "",
            FinGptSentiment.Normalize(EvaluationRecords.String(r, "output")))).ToList();

    /// <summary>The rows Hugging Face's seeded train_test_split puts in "test", in its order.</summary>
    public static IReadOnlyList<SentimentItem> TestSplit(IReadOnlyList<SentimentItem> rows, double testSize) =>
        HfTrainTestSplit.TestIndices(rows.Count, testSize, SplitSeed).Select(i => rows[i]).ToList();

    static string MapLabel(FedLlm.Data.Datasets.DataRecord r, string field, Func<string, string> map)
    {
        try { return map(field); }
        catch (FormatException e) { throw r.Location.Error(field, e.Message, e); }
    }

    static List<string> SplitFiles(string folder, string[] splits)
    {
        var files = Directory.GetFiles(folder).Where(f => !Path.GetFileName(f).StartsWith('.')).ToList();
        var ordered = splits.Select(s => files.Where(f => Path.GetFileName(f).Contains(s, StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal).ToList())
            .SelectMany(f => f).Distinct().ToList();
        if (ordered.Count == 0) throw new FileNotFoundException($"no train/validation/test files in {folder}");
        return ordered;
    }
}
