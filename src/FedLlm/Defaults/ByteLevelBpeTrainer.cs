namespace FedLlm.Defaults;

/// <summary>
/// Learns a byte-level BPE vocabulary (GPT-2 / Llama 3 style) from text, deterministically.
/// </summary>
/// <remarks>
/// <para>Algorithm (Sennrich et al. 2016, on bytes as in GPT-2): pre-tokenize with <see cref="ByteLevel"/>, count each
/// distinct pre-token, start every pre-token as its byte characters (all 256 are in the vocabulary from the start), then
/// repeatedly merge the most frequent adjacent pair everywhere, until the vocabulary is full or no pair occurs
/// <see cref="MinFrequency"/> times. Pairs never cross pre-token boundaries.</para>
/// <para>Determinism: ties in frequency go to the ordinally smallest (left, right) token-string pair, and nothing depends
/// on hash or enumeration order, so the same texts give the same merges on every machine and run.</para>
/// <para>Vocabulary layout: ids 0-255 are the bytes (id = byte value), then one id per new merged token in merge order,
/// then <see cref="ByteLevelBpeTokenizer.BosToken"/>, <see cref="ByteLevelBpeTokenizer.EosToken"/>,
/// <see cref="ByteLevelBpeTokenizer.PadToken"/>. As in Hugging Face's trainer, a merge whose result already exists
/// reuses that token's id.</para>
/// </remarks>
public sealed class ByteLevelBpeTrainer
{
    private const int ByteCount = 256;

    /// <summary>Creates a trainer.</summary>
    /// <param name="vocabSize">Target size including the 256 bytes and the 3 special tokens.</param>
    /// <param name="minFrequency">A pair must occur this often (counting repeats of a pre-token) to be merged.</param>
    public ByteLevelBpeTrainer(int vocabSize = 512, int minFrequency = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, ByteCount + ByteLevelBpeTokenizer.SpecialTokens.Count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minFrequency);
        VocabSize = vocabSize;
        MinFrequency = minFrequency;
    }

    /// <summary>Target vocabulary size, special tokens included; the result is smaller if the corpus runs out of pairs.</summary>
    public int VocabSize { get; }

    /// <summary>Minimum occurrences for a pair to be merged.</summary>
    public int MinFrequency { get; }

    /// <summary>Learns merges from <paramref name="texts"/>.</summary>
    public ByteLevelBpeTokenizer Train(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var piece in ByteLevel.PreTokenize(text))
                counts[piece] = counts.GetValueOrDefault(piece) + 1;

        var tokens = new List<string>(VocabSize);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var b = 0; b < ByteCount; b++)
        {
            var s = ByteLevel.CharFor((byte)b).ToString();
            ids[s] = tokens.Count;
            tokens.Add(s);
        }

        // Sorted so that the word order, and with it every count and tie, is independent of dictionary internals.
        var words = counts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Symbols: kv.Key.Select(c => ids[c.ToString()]).ToList(), Count: kv.Value))
            .ToList();

        var merges = new List<(string Left, string Right)>();
        var modelBudget = VocabSize - ByteLevelBpeTokenizer.SpecialTokens.Count;
        while (tokens.Count < modelBudget)
        {
            var best = BestPair(words, tokens);
            if (best is null) break;
            var (left, right) = best.Value;
            var merged = tokens[left] + tokens[right];
            if (!ids.TryGetValue(merged, out var mergedId))
            {
                mergedId = tokens.Count;
                ids[merged] = mergedId;
                tokens.Add(merged);
            }

            merges.Add((tokens[left], tokens[right]));
            foreach (var (symbols, _) in words) Replace(symbols, left, right, mergedId);
        }

        return new ByteLevelBpeTokenizer(tokens, merges);
    }

    private (int Left, int Right)? BestPair(List<(List<int> Symbols, long Count)> words, List<string> tokens)
    {
        var pairCounts = new Dictionary<(int, int), long>();
        foreach (var (symbols, count) in words)
            for (var i = 0; i + 1 < symbols.Count; i++)
            {
                var pair = (symbols[i], symbols[i + 1]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + count;
            }

        (int Left, int Right)? best = null;
        long bestCount = 0;
        foreach (var (pair, count) in pairCounts)
        {
            if (count < MinFrequency) continue;
            if (best is null || count > bestCount || (count == bestCount && ComparePairs(pair, best.Value, tokens) < 0))
            {
                best = pair;
                bestCount = count;
            }
        }

        return best;
    }

    private static int ComparePairs((int Left, int Right) a, (int Left, int Right) b, List<string> tokens)
    {
        var c = string.CompareOrdinal(tokens[a.Left], tokens[b.Left]);
        return c != 0 ? c : string.CompareOrdinal(tokens[a.Right], tokens[b.Right]);
    }

    /// <summary>Replaces each non-overlapping (left, right) occurrence, scanning left to right.</summary>
    private static void Replace(List<int> symbols, int left, int right, int merged)
    {
        var write = 0;
        for (var read = 0; read < symbols.Count; read++)
        {
            if (read + 1 < symbols.Count && symbols[read] == left && symbols[read + 1] == right)
            {
                symbols[write++] = merged;
                read++;
            }
            else
            {
                symbols[write++] = symbols[read];
            }
        }

        symbols.RemoveRange(write, symbols.Count - write);
    }
}
