namespace FedLlm.Defaults;

/// <summary>Exact-match scoring of generated answers, the metric of the default data set's held-out split.</summary>
/// <remarks>
/// Only surrounding whitespace is ignored (the model's answer follows "Response:" and a space); case and inner text must
/// match. Stricter than FinGPT's substring mapping on purpose: an answer like "positive or negative" should not score.
/// </remarks>
public static class ExactMatch
{
    /// <summary>The text compared: <paramref name="text"/> without leading and trailing whitespace.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Trim();
    }

    /// <summary>Whether the prediction equals the reference after <see cref="Normalize"/>.</summary>
    public static bool IsMatch(string prediction, string reference) =>
        string.Equals(Normalize(prediction), Normalize(reference), StringComparison.Ordinal);

    /// <summary>Fraction of predictions that match their reference.</summary>
    /// <exception cref="ArgumentException">The lists differ in length or are empty.</exception>
    public static double Accuracy(IReadOnlyList<string> predictions, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        ArgumentNullException.ThrowIfNull(references);
        if (predictions.Count != references.Count)
            throw new ArgumentException($"{predictions.Count} predictions for {references.Count} references.", nameof(predictions));
        if (predictions.Count == 0) throw new ArgumentException("Nothing to score.", nameof(predictions));
        var hits = 0;
        for (var i = 0; i < predictions.Count; i++)
            if (IsMatch(predictions[i], references[i])) hits++;
        return (double)hits / predictions.Count;
    }
}
