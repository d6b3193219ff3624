using System.Text.Json;
using System.Text.Json.Nodes;
using FedLlm.Data;

namespace FedLlm.Evaluation.Tasks;

/// <summary>One BIG-Bench Hard example; <see cref="Task"/> is the file's name (e.g. "date_understanding").</summary>
public sealed record BbhExample(string Task, int Index, string Input, string Target);

/// <summary>Reads BBH task files (<c>{"examples": [{"input", "target"}]}</c>), one file or every *.json of a folder.</summary>
public static class BbhExamples
{
    /// <summary>Every example of the file at <paramref name="path"/>, or of every *.json in the folder (the task is the
    /// file name).</summary>
    public static IReadOnlyList<BbhExample> Read(string path)
    {
        var files = Directory.Exists(path) ? Directory.GetFiles(path, "*.json").Order(StringComparer.Ordinal).ToList() : [path];
        if (files.Count == 0) throw new FileNotFoundException($"bbh: no *.json task files in {path}");
        return files.SelectMany(ReadFile).ToList();
    }

    static IEnumerable<BbhExample> ReadFile(string file)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"bbh: file not found: {file}", file);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new DataFormatException(file, e.LineNumber + 1, null, null, "not valid JSON: " + e.Message, e); }
        if (root?["examples"] is not JsonArray examples) throw new DataFormatException(file, null, null, "examples", "missing or not a list");
        string task = Path.GetFileNameWithoutExtension(file);
        for (int i = 0; i < examples.Count; i++)
        {
            string Field(string name) => examples[i]?[name] is JsonValue v && v.TryGetValue(out string? s) ? s
                : throw new DataFormatException(file, null, i, name, "missing or not a string");
            yield return new BbhExample(task, i, Field("input"), Field("target"));
        }
    }

    /// <summary>"Q: {input}\nA:" as lm-eval's BBH prompts, after k solved examples of the same task.</summary>
    public static string Prompt(BbhExample example, IReadOnlyList<BbhExample> shots, string answerPrefix = "") =>
        string.Concat(shots.Select(s => $"Q: {s.Input}\nA: {s.Target}\n\n")) + $"Q: {example.Input}\nA:{answerPrefix}";

    /// <summary>
    /// Splits each task's examples into the first k (the few-shot exemplars, as BBH's own prompts are a task's solved
    /// examples) and the rest (evaluated).
    /// </summary>
    public static (IReadOnlyDictionary<string, IReadOnlyList<BbhExample>> Shots, IReadOnlyList<BbhExample> Evaluated) SplitShots(
        IReadOnlyList<BbhExample> examples, int fewShot)
    {
        var shots = new Dictionary<string, IReadOnlyList<BbhExample>>();
        var evaluated = new List<BbhExample>();
        foreach (var task in examples.GroupBy(e => e.Task))
        {
            var list = task.ToList();
            if (fewShot >= list.Count) throw new ArgumentException($"bbh: {fewShot}-shot leaves no example of '{task.Key}' to evaluate ({list.Count} in all)");
            shots[task.Key] = list.Take(fewShot).ToList();
            evaluated.AddRange(list.Skip(fewShot));
        }
        return (shots, evaluated);
    }
}
