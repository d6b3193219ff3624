using FedLlm.Data;
using FedLlm.Evaluation.Data;

namespace FedLlm.Evaluation.Tasks;

/// <summary>One MMLU question: four choices, the right one's index (0 = A).</summary>
public sealed record MmluQuestion(string Subject, string Question, IReadOnlyList<string> Choices, int Answer);

/// <summary>
/// MMLU (Hendrycks et al. 2021, "Measuring Massive Multitask Language Understanding") by log-likelihood of the answer
/// letter, with the paper's prompt: a header naming the subject, k solved dev questions, then the question with
/// "A. …" to "D. …" and "Answer:"; the continuations are " A" to " D". Reports accuracy per subject, micro over all
/// questions ("accuracy") and macro over subjects ("accuracy_macro").
/// </summary>
/// <remarks>
/// Data: the published CSV folder (<c>data/{dev,val,test}/{subject}_{split}.csv</c>, no header:
/// question,A,B,C,D,answer letter; give the folder that holds <c>dev/</c>, or its parent), or the Hugging Face
/// cais/mmlu Parquet/JSONL (question, subject, choices, answer as 0–3) with <c>--param dev=FILE</c> for few-shot.
/// Parameters: split (test|val, default test), dev (few-shot file for the Parquet layout).
/// </remarks>
public sealed class MmluTask(IReadOnlyList<MmluQuestion> questions, IReadOnlyDictionary<string, IReadOnlyList<MmluQuestion>> dev) : IEvaluationTask
{
    /// <inheritdoc/>
    public string Name => "mmlu";

    /// <summary>The answer letters, in choice order.</summary>
    public static readonly string[] Letters = ["A", "B", "C", "D"];

    /// <summary>Builds the task from the CLI's spec: a CSV folder or cais/mmlu Parquet; parameters split (test, val,
    /// dev) and dev for the few-shot examples.</summary>
    public static MmluTask FromSpec(EvaluationTaskSpec spec)
    {
        var parameters = new TaskParameterReader(spec, "split", "dev");
        string split = parameters.String("split") ?? "test";
        if (split is not ("test" or "val" or "dev")) throw new ArgumentException($"mmlu: split={split} is not test, val or dev");
        if (Directory.Exists(spec.DataPath))
        {
            string root = Directory.Exists(Path.Combine(spec.DataPath, "data", split)) ? Path.Combine(spec.DataPath, "data") : spec.DataPath;
            string splitDir = Path.Combine(root, split);
            if (!Directory.Exists(splitDir))
                throw new DirectoryNotFoundException($"mmlu: {spec.DataPath} has no {split}/ folder (expected the published data/{{dev,val,test}}/ layout)");
            var questions = ReadCsvFolder(splitDir, split);
            var devQuestions = Directory.Exists(Path.Combine(root, "dev")) ? ReadCsvFolder(Path.Combine(root, "dev"), "dev") : [];
            return new MmluTask(questions, BySubject(devQuestions));
        }
        var rows = ReadRecords(spec.DataPath);
        var dev = parameters.String("dev") is { } devPath ? ReadRecords(devPath) : [];
        return new MmluTask(rows, BySubject(dev));
    }

    static IReadOnlyDictionary<string, IReadOnlyList<MmluQuestion>> BySubject(IReadOnlyList<MmluQuestion> rows) =>
        rows.GroupBy(q => q.Subject).ToDictionary(g => g.Key, g => (IReadOnlyList<MmluQuestion>)g.ToList());

    /// <summary>Every <c>{subject}_{split}.csv</c> of a folder, subjects in alphabetical order.</summary>
    public static IReadOnlyList<MmluQuestion> ReadCsvFolder(string folder, string split)
    {
        string suffix = "_" + split + ".csv";
        var files = Directory.GetFiles(folder, "*" + suffix).Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new FileNotFoundException($"mmlu: no *{suffix} files in {folder}");
        return files.SelectMany(f => ReadCsv(f, Path.GetFileName(f)[..^suffix.Length])).ToList();
    }

    /// <summary>Reads one subject's CSV (question, A, B, C, D, answer letter; no header).</summary>
    public static IEnumerable<MmluQuestion> ReadCsv(string path, string subject)
    {
        foreach (var (line, fields) in CsvRows.Read(path))
        {
            if (fields.Count != 6) throw new DataFormatException(path, line, null, null, $"expected 6 columns (question,A,B,C,D,answer), got {fields.Count}");
            int answer = Array.IndexOf(Letters, fields[5].Trim());
            if (answer < 0) throw new DataFormatException(path, line, null, "answer", $"'{fields[5]}' is not A, B, C or D");
            yield return new MmluQuestion(subject, fields[0], fields.Skip(1).Take(4).ToList(), answer);
        }
    }

    /// <summary>The cais/mmlu layout: question, subject, choices (a list of 4), answer (0–3).</summary>
    public static IReadOnlyList<MmluQuestion> ReadRecords(string path) => EvaluationRecords.ReadAll(path).Select(r =>
    {
        var choices = EvaluationRecords.Strings(r, "choices");
        if (choices.Count != 4) throw r.Location.Error("choices", $"expected 4 choices, got {choices.Count}");
        int answer = EvaluationRecords.Int(r, "answer");
        if (answer is < 0 or > 3) throw r.Location.Error("answer", $"{answer} is not 0–3");
        return new MmluQuestion(EvaluationRecords.String(r, "subject"), EvaluationRecords.String(r, "question"), choices, answer);
    }).ToList();

    /// <summary>"{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"</summary>
    public static string FormatQuestion(MmluQuestion q) =>
        q.Question + string.Concat(q.Choices.Select((c, i) => $"\n{Letters[i]}. {c}")) + "\nAnswer:";

    /// <summary>The prompt header of <paramref name="subject"/> (underscores become spaces), as the original MMLU code
    /// writes it.</summary>
    public static string Header(string subject) =>
        $"The following are multiple choice questions (with answers) about {subject.Replace('_', ' ')}.\n\n";

    /// <summary>The full prompt: header, the first k dev questions of the subject answered, then the question.</summary>
    public string Prompt(MmluQuestion q, int fewShot)
    {
        var shots = dev.TryGetValue(q.Subject, out var list) ? list : [];
        if (fewShot > shots.Count)
            throw new ArgumentException($"mmlu: {fewShot}-shot needs {fewShot} dev questions of '{q.Subject}', found {shots.Count}");
        return Header(q.Subject) + string.Concat(shots.Take(fewShot).Select(s => FormatQuestion(s) + " " + Letters[s.Answer] + "\n\n")) + FormatQuestion(q);
    }

    /// <inheritdoc/>
    public EvaluationReport Evaluate(IEvaluationModel model, EvaluationRunOptions options, IProgress<EvaluationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var items = GenerationRunner.Limit(Name, questions, options).Select((q, i) =>
            new MultipleChoiceItem($"{q.Subject}/{i}", Prompt(q, options.FewShot), Letters.Select(l => " " + l).ToList(), q.Answer, q.Subject)).ToList();
        return MultipleChoiceRunner.Run(Name, items, model, options, progress, cancellationToken);
    }
}
