using FedLlm.Evaluation.Tasks;
using FedLlm.Tokenization;

namespace FedLlm.Evaluation;

/// <summary>A task name the CLI and the federation accept, what it measures, and how it is built from a spec.</summary>
/// <param name="DefaultMaxNewTokens">Generation budget when the user gives none (null: the run options' default).</param>
/// <param name="Name">The name on the command line (<c>fedllm eval --task NAME</c>) and in YAML.</param>
/// <param name="Description">One line on what the task measures and how, for <c>--help</c>.</param>
/// <param name="Create">Builds the task from a spec (data path and parameters).</param>
public sealed record EvaluationTaskEntry(string Name, string Description, Func<EvaluationTaskSpec, IEvaluationTask> Create, int? DefaultMaxNewTokens = null)
{
    /// <summary>A factory that also reads the model's tokenizer (its chat template formats judged conversations); used
    /// instead of <see cref="Create"/> when a tokenizer is at hand.</summary>
    public Func<EvaluationTaskSpec, ITextTokenizer?, IEvaluationTask>? CreateWithTokenizer { get; init; }
}

/// <summary>Every evaluation task by name, one line each.</summary>
public static class EvaluationTaskRegistry
{
    /// <summary>Every task, in the order the help lists them.</summary>
    public static IReadOnlyList<EvaluationTaskEntry> Entries { get; } =
    [
        new("mmlu", "MMLU by log-likelihood (CSV folder or cais/mmlu Parquet): accuracy per subject, micro and macro", MmluTask.FromSpec),
        new("bbh-mc", "BIG-Bench Hard multiple-choice subsets by log-likelihood: accuracy, acc_norm", BbhMultipleChoiceTask.FromSpec),
        new("mc", "any JSONL {question, choices, answer} by log-likelihood: accuracy, acc_norm", JsonlMultipleChoiceTask.FromSpec),
        new("gsm8k", "GSM8K by generation: exact match of the #### number (strict and flexible)", Gsm8kTask.FromSpec, 256),
        new("bbh", "BIG-Bench Hard by generation: exact match of the extracted answer", BbhGenerationTask.FromSpec, 128),
        new("generate", "any JSONL {prompt, answer} by generation: exact match after --param extract=REGEX", RegexGenerationTask.FromSpec, 64),
        new("fpb", "Financial PhraseBank (sentences_50agree, FinGPT test split): accuracy, macro-F1, weighted-F1", FinancialSentimentTask.FromSpec, FinancialSentimentTask.DefaultMaxNewTokens),
        new("fiqa", "FiQA-SA (FinGPT test split): accuracy, macro-F1, weighted-F1", FinancialSentimentTask.FromSpec, FinancialSentimentTask.DefaultMaxNewTokens),
        new("tfns", "Twitter Financial News Sentiment (validation): accuracy, macro-F1, weighted-F1", FinancialSentimentTask.FromSpec, FinancialSentimentTask.DefaultMaxNewTokens),
        new("nwgi", "News With GPT Instructions (test): accuracy, macro-F1, weighted-F1", FinancialSentimentTask.FromSpec, FinancialSentimentTask.DefaultMaxNewTokens),
        new("sentiment", "FinGPT-layout sentiment instructions {instruction, input, output}: accuracy, macro-F1, weighted-F1", FinancialSentimentTask.FromSpec, FinancialSentimentTask.DefaultMaxNewTokens),
        new("overlap", "JSONL {prediction or prompt, reference}: corpus BLEU (sacrebleu) and ROUGE-L (rouge_score)", OverlapTask.FromSpec, 128),
        new("bleu", "alias of overlap", OverlapTask.FromSpec, 128),
        new("rouge", "alias of overlap", OverlapTask.FromSpec, 128),
        new("humaneval", "HumanEval (JSONL): completions run by python3 in a sandboxed process; unbiased pass@k", HumanEvalTask.FromSpec, 512),
        new("mbpp", "MBPP (full or sanitized JSONL, lm-eval's [BEGIN]/[DONE] prompt): sandboxed execution; pass@k", MbppTask.FromSpec, 512),
        new("mt_bench", "MT-Bench (FastChat question.jsonl, two turns) judged by an OpenAI-compatible LLM: MT-1, MT-2, MT-Avg", JudgedBenchmarkTask.FromSpec, 1024)
            { CreateWithTokenizer = JudgedBenchmarkTask.FromSpec },
        new("vicuna_bench", "Vicuna-Bench (FastChat question.jsonl) judged by an OpenAI-compatible LLM: mean score", JudgedBenchmarkTask.FromSpec, 1024)
            { CreateWithTokenizer = JudgedBenchmarkTask.FromSpec },
    ];

    /// <summary>The tasks' names.</summary>
    public static IReadOnlyList<string> Names => Entries.Select(e => e.Name).ToList();

    /// <exception cref="ArgumentException">No task has that name; the message lists the known names.</exception>
    public static EvaluationTaskEntry Find(string name) =>
        Entries.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown evaluation task '{name}'; known tasks: {string.Join(", ", Names)}");

    /// <param name="tokenizer">The evaluated model's tokenizer, for tasks that format conversations with its chat template.</param>
    /// <param name="spec">The task name, its data path and its parameters.</param>
    public static IEvaluationTask Create(EvaluationTaskSpec spec, ITextTokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var entry = Find(spec.Name);
        if (!File.Exists(spec.DataPath) && !Directory.Exists(spec.DataPath))
            throw new FileNotFoundException($"task '{spec.Name}': data not found: {spec.DataPath}", spec.DataPath);
        var named = spec with { Name = entry.Name };
        return entry.CreateWithTokenizer is { } withTokenizer && tokenizer is not null ? withTokenizer(named, tokenizer) : entry.Create(named);
    }
}
