using FedLlm.Evaluation.Metrics;

namespace FedLlm.Tests.Evaluation;

public class TextOverlapTests
{
    [Fact]
    public void Tokenizer13a_splits_punctuation_but_keeps_numbers_and_apostrophes()
    {
        Assert.Equal("Hello , world ! It's 3.14 and 1,000 - 2 .", Tokenizer13a.Tokenize("Hello, world! It's 3.14 and 1,000-2."));
        Assert.Equal("AT & T ( \" quoted \" )", Tokenizer13a.Tokenize("AT&amp;T (&quot;quoted&quot;)"));
    }

    [Fact]
    public void Corpus_bleu_sums_statistics_over_sentences_then_applies_the_brevity_penalty()
    {
        // Sentence 1: 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, 4-grams 0/3. Sentence 2 ("a b c d e" vs 8 tokens):
        // 5/5, 4/4, 3/3, 2/2. Corpus: 10/11, 7/9, 4/7, 2/5; lengths 11 vs 14.
        var result = CorpusBleu.Compute(["the cat sat on the mat", "a b c d e"], [["the cat is on the mat"], ["a b c d e f g h"]]);
        double expected = Math.Exp(1 - 14.0 / 11) * Math.Pow(10.0 / 11 * 7.0 / 9 * 4.0 / 7 * 2.0 / 5, 0.25) * 100;
        Assert.Equal(expected, result.Score, 9);
        Assert.Equal(Math.Exp(1 - 14.0 / 11), result.BrevityPenalty, 12);
        Assert.Equal(100.0 * 7 / 9, result.Precisions[1], 9);
    }

    [Fact]
    public void Exp_smoothing_replaces_an_order_without_matches_and_none_gives_zero()
    {
        // 4-grams 0/3: exp smoothing gives precision 100/(2·3).
        var smoothed = CorpusBleu.Compute(["the cat sat on the mat"], [["the cat is on the mat"]]);
        Assert.Equal(100.0 / 6, smoothed.Precisions[3], 9);
        Assert.Equal(Math.Pow(5.0 / 6 * 3.0 / 5 * 1.0 / 4 * 1.0 / 6, 0.25) * 100, smoothed.Score, 9);
        Assert.Equal(0, CorpusBleu.Compute(["the cat sat on the mat"], [["the cat is on the mat"]], BleuSmoothing.None).Score);
    }

    [Fact]
    public void Bleu_uses_the_closest_reference_length_and_clips_by_the_best_reference()
    {
        // Hypothesis of 4 tokens; references of 3 and 6 tokens: closest is 3 (no brevity penalty).
        var result = CorpusBleu.Compute(["the the the the"], [["the cat sat", "the the mat on a rug"]]);
        Assert.Equal(3, result.ReferenceLength);
        Assert.Equal(1.0, result.BrevityPenalty);
        Assert.Equal(100.0 * 2 / 4, result.Precisions[0], 9); // "the" clipped at 2 (the second reference)
    }

    [Fact]
    public void RougeL_lowercases_replaces_non_alphanumerics_and_scores_the_lcs()
    {
        // reference: the cat sat on the mat (6); prediction: the cat on a mat (5); LCS "the cat on mat" = 4.
        var score = RougeL.Score("The cat sat on the mat.", "the CAT on a mat!");
        Assert.Equal(4.0 / 5, score.Precision, 12);
        Assert.Equal(4.0 / 6, score.Recall, 12);
        Assert.Equal(2 * 0.8 * (4.0 / 6) / (0.8 + 4.0 / 6), score.FMeasure, 12);
        Assert.Equal(["caf", "au", "lait"], RougeL.Tokenize("Café-au-lait"));
        Assert.Equal(0, RougeL.Score("", "anything").FMeasure);
    }
}
