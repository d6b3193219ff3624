using FedLlm.Alignment;
using FedLlm.Data;

namespace FedLlm.Tests.Alignment;

public class PreferenceDataTests
{
    /// <summary>Space-separated integers are ids; BOS 1 in front with special tokens, EOS 2. Optionally merges "7 8" into 78.</summary>
    sealed class WordTokenizer(bool mergeSevenEight = false) : FedLlm.Tokenization.ITextTokenizer
    {
        public int VocabSize => 100;
        public int? BosTokenId => 1;
        public int? EosTokenId => 2;
        public int? PadTokenId => 0;
        public string? ChatTemplate => null;
        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
        {
            var ids = text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList();
            for (int i = 0; mergeSevenEight && i + 1 < ids.Count; i++)
                if (ids[i] == 7 && ids[i + 1] == 8) { ids[i] = 78; ids.RemoveAt(i + 1); }
            return addSpecialTokens ? [1, .. ids] : ids;
        }
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => string.Join(' ', ids);
        public int? TokenToId(string token) => int.TryParse(token, out int id) ? id : null;
    }

    static string Words(int from, int count) => string.Join(' ', Enumerable.Range(from, count));

    [Fact]
    public void Short_pairs_keep_BOS_prompt_and_responses_with_EOS()
    {
        var pair = new PreferencePairBuilder(new WordTokenizer()).Build(new PreferenceExample("5 6 7", " 8 9", " 10"));
        Assert.Equal([1, 5, 6, 7], pair.PromptIds);
        Assert.Equal([8, 9, 2], pair.ChosenIds);
        Assert.Equal([10, 2], pair.RejectedIds);
        Assert.False(pair.Truncated);
        Assert.True(pair.BoundaryAligned);
    }

    [Fact]
    public void Long_pairs_lose_the_prompt_start_first_then_the_responses_end_as_TRL_truncates()
    {
        // Prompt: BOS + 10 tokens; responses 3 and 6 tokens + EOS. max_length 12, max_prompt_length 4.
        var builder = new PreferencePairBuilder(new WordTokenizer(), maxLength: 12, maxPromptLength: 4);
        var pair = builder.Build(new PreferenceExample(Words(10, 10), " " + Words(50, 3), " " + Words(60, 6)));
        Assert.Equal([1, 17, 18, 19], pair.PromptIds);          // BOS kept, then the prompt's last 3 tokens
        Assert.Equal([50, 51, 52, 2], pair.ChosenIds);          // 4 + 7 ≤ 12 after the prompt cut: responses intact
        Assert.Equal([60, 61, 62, 63, 64, 65, 2], pair.RejectedIds);
        Assert.True(pair.Truncated);

        // Responses of 10 tokens + EOS: even the cut prompt leaves too little room, so each response keeps 12 − 4 = 8.
        var cut = builder.Build(new PreferenceExample(Words(10, 10), " " + Words(50, 10), " " + Words(70, 2)));
        Assert.Equal(Enumerable.Range(50, 8), cut.ChosenIds);   // EOS cut with the rest
        Assert.Equal([70, 71, 2], cut.RejectedIds);              // shorter than the cap: untouched
        Assert.Equal(4, cut.PromptIds.Length);
    }

    [Fact]
    public void A_prompt_that_fits_is_not_cut_even_when_the_responses_must_be()
    {
        var builder = new PreferencePairBuilder(new WordTokenizer(), maxLength: 8, maxPromptLength: 4);
        var pair = builder.Build(new PreferenceExample("5 6", " " + Words(50, 9), " 60"));
        Assert.Equal([1, 5, 6], pair.PromptIds);
        Assert.Equal(Enumerable.Range(50, 4), pair.ChosenIds); // TRL caps responses at max_length − max_prompt_length
    }

    [Fact]
    public void A_merge_across_the_boundary_falls_back_to_encoding_the_response_alone()
    {
        var pair = new PreferencePairBuilder(new WordTokenizer(mergeSevenEight: true)).Build(new PreferenceExample("5 7", " 8 9", " 10"));
        Assert.Equal([1, 5, 7], pair.PromptIds);
        Assert.Equal([8, 9, 2], pair.ChosenIds);
        Assert.False(pair.BoundaryAligned);
    }

    [Fact]
    public void Collation_puts_all_chosen_rows_before_all_rejected_rows_right_padded_with_response_labels()
    {
        var a = new PreferencePair([1, 5], [6, 2], [7, 8, 2]);
        var b = new PreferencePair([1, 9, 9], [10, 2], [11, 2]);
        var batch = new PreferenceCollator(padTokenId: 0).Collate([a, b]);
        Assert.Equal([4L, 5L], batch.Shape);
        long[] Row(long[] values, int r) => values.Skip(r * 5).Take(5).ToArray();
        Assert.Equal([1L, 5, 6, 2, 0], Row(batch.InputIds, 0));     // a chosen
        Assert.Equal([1L, 9, 9, 10, 2], Row(batch.InputIds, 1));    // b chosen
        Assert.Equal([1L, 5, 7, 8, 2], Row(batch.InputIds, 2));     // a rejected
        Assert.Equal([1L, 9, 9, 11, 2], Row(batch.InputIds, 3));    // b rejected
        Assert.Equal([-100L, -100, 6, 2, -100], Row(batch.Labels, 0));
        Assert.Equal([-100L, -100, -100, 11, 2], Row(batch.Labels, 3));
        Assert.Equal(4 + 5 + 5 + 5, batch.RealTokens);
    }

    [Fact]
    public void Metrics_aggregate_weighted_by_pairs()
    {
        var small = new DpoMetrics(1, Loss: 1, RewardsChosen: 1, RewardsRejected: 0, RewardsAccuracy: 1, LogpsChosen: -1, LogpsRejected: -2);
        var large = new DpoMetrics(3, Loss: 0, RewardsChosen: 0, RewardsRejected: 0, RewardsAccuracy: 0, LogpsChosen: -5, LogpsRejected: -6);
        var all = DpoMetrics.Aggregate([small, large]);
        Assert.Equal(4, all.Pairs);
        Assert.Equal(0.25, all.Loss, 12);
        Assert.Equal(0.25, all.RewardsAccuracy, 12);
        Assert.Equal(-4, all.LogpsChosen, 12);
        Assert.Equal(0.25, all.ToTrlLog()["rewards/margins"], 12);
    }

    [Fact]
    public void Label_smoothing_and_a_reversed_preference_change_the_loss_as_conservative_DPO_says()
    {
        // Margin h = β·((−1 − −2) − (−3 − −3)) = 0.1: loss = softplus(−0.1) without smoothing.
        var plain = DpoLoss.Metrics([-1.0], [-3.0], [-2.0], [-3.0], beta: 0.1);
        Assert.Equal(Math.Log(1 + Math.Exp(-0.1)), plain.Loss, 12);
        Assert.Equal(1, plain.RewardsAccuracy);
        var smoothed = DpoLoss.Metrics([-1.0], [-3.0], [-2.0], [-3.0], beta: 0.1, labelSmoothing: 0.2);
        Assert.Equal(0.8 * Math.Log(1 + Math.Exp(-0.1)) + 0.2 * Math.Log(1 + Math.Exp(0.1)), smoothed.Loss, 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DpoOptions { LabelSmoothing = 0.5 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DpoOptions { Beta = 0 }.Validate());
    }
}
