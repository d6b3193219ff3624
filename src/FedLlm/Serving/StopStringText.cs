namespace FedLlm.Serving;

/// <summary>
/// What of a growing decoded text may be shown to a streaming client now, given stop strings: text up to a stop string
/// is final; a tail that could still become a stop string, or an unfinished UTF-8 character, is held back.
/// </summary>
public static class StopStringText
{
    /// <summary>The index of the first stop string in <paramref name="text"/>, or -1.</summary>
    public static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        int cut = -1;
        foreach (var stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        return cut;
    }

    /// <summary>
    /// How many leading characters of <paramref name="text"/> (which contains no stop string) can no longer change or
    /// turn into a stop string: all but the longest tail that is a proper prefix of some stop string, and but a
    /// trailing U+FFFD (a byte-level token that ends inside a multi-byte character decodes to it until the rest arrives).
    /// </summary>
    public static int SafeLength(string text, IReadOnlyList<string> stops)
    {
        int end = text.Length;
        while (end > 0 && text[end - 1] == '\uFFFD') end--;
        int hold = 0;
        foreach (var stop in stops)
            for (int k = Math.Min(stop.Length - 1, end); k > hold; k--)
                if (string.CompareOrdinal(text, end - k, stop, 0, k) == 0) { hold = k; break; }
        return end - hold;
    }
}
