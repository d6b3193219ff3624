using System.Globalization;

namespace FedLlm.Evaluation.Metrics;

/// <summary>
/// FinGPT's sentiment benchmark conventions (fingpt/FinGPT_Benchmark/benchmarks/{fpb,fiqa,tfns,nwgi}.py): how each
/// data set's labels map to negative/neutral/positive, and how generated text becomes a label.
/// </summary>
public static class FinGptSentiment
{
    /// <summary>The three labels every sentiment data set is mapped to.</summary>
    public const string Negative = "negative", Neutral = "neutral", Positive = "positive";

    /// <summary>
    /// FinGPT's <c>change_target</c>: "positive" or "Positive" anywhere in the text → positive, else "negative" or
    /// "Negative" → negative, else neutral. Case-sensitive on purpose ("POSITIVE" is neutral), as FinGPT scores.
    /// </summary>
    public static string Normalize(string text)
    {
        if (text.Contains("positive", StringComparison.Ordinal) || text.Contains("Positive", StringComparison.Ordinal)) return Positive;
        if (text.Contains("negative", StringComparison.Ordinal) || text.Contains("Negative", StringComparison.Ordinal)) return Negative;
        return Neutral;
    }

    /// <summary>financial_phrasebank: 0 negative, 1 neutral, 2 positive.</summary>
    public static string FpbLabel(int label) => label switch
    {
        0 => Negative, 1 => Neutral, 2 => Positive,
        _ => throw new FormatException($"FPB label {label} is not 0, 1 or 2"),
    };

    /// <summary>twitter-financial-news-sentiment: 0 negative ("Bearish"), 1 positive ("Bullish"), 2 neutral — not FPB's order.</summary>
    public static string TfnsLabel(int label) => label switch
    {
        0 => Negative, 1 => Positive, 2 => Neutral,
        _ => throw new FormatException($"TFNS label {label} is not 0, 1 or 2"),
    };

    /// <summary>FiQA-SA sentiment score in [−1, 1]: below −0.1 negative, from 0.1 positive, neutral between.</summary>
    public static string FiqaLabel(double score) => score < -0.1 ? Negative : score >= 0.1 ? Positive : Neutral;

    /// <summary>news_with_gpt_instructions: strong/moderately → that polarity, mildly → neutral.</summary>
    public static string NwgiLabel(string label) => label.Trim().ToLower(CultureInfo.InvariantCulture) switch
    {
        "strong negative" or "moderately negative" => Negative,
        "strong positive" or "moderately positive" => Positive,
        "mildly negative" or "mildly positive" or "neutral" => Neutral,
        _ => throw new FormatException($"NWGI label '{label}' is not one of strong/moderately/mildly negative/positive or neutral"),
    };

    /// <summary>The financial_phrasebank text file's label word (sentence@label).</summary>
    public static string FpbWord(string word) => word.Trim() switch
    {
        "negative" => Negative, "neutral" => Neutral, "positive" => Positive,
        _ => throw new FormatException($"FPB label '{word.Trim()}' is not negative, neutral or positive"),
    };
}
