using FedLlm.Data;
using FedLlm.Data.Datasets;
using FedLlm.Defaults;
using FedLlm.Tests.Data;
using Xunit;

namespace FedLlm.Tests.Defaults;

public sealed class SentimentPreferenceDatasetTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly FinancialSentimentDataset Headlines = FinancialSentimentDataset.Generate();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Same_seed_gives_identical_bytes_and_another_seed_differs()
    {
        var a = SentimentPreferenceDataset.Generate(Headlines).Write(Path.Combine(_dir.Path, "a"));
        var b = SentimentPreferenceDataset.Generate(FinancialSentimentDataset.Generate()).Write(Path.Combine(_dir.Path, "b"));
        var c = SentimentPreferenceDataset.Generate(Headlines, seed: 7).Write(Path.Combine(_dir.Path, "c"));

        Assert.Equal(File.ReadAllBytes(a.TrainPath), File.ReadAllBytes(b.TrainPath));
        Assert.Equal(File.ReadAllBytes(a.EvalPath), File.ReadAllBytes(b.EvalPath));
        Assert.NotEqual(File.ReadAllBytes(a.TrainPath), File.ReadAllBytes(c.TrainPath));
    }

    [Fact]
    public void Chosen_is_the_headline_label_and_rejected_a_wrong_one_with_both_wrong_labels_used()
    {
        var pairs = SentimentPreferenceDataset.Generate(Headlines);

        Assert.Equal(Headlines.Train.Count, pairs.Train.Count);
        Assert.Equal(Headlines.Eval.Count, pairs.Eval.Count);
        var rejectedFor = new Dictionary<SentimentLabel, HashSet<string>>();
        for (int i = 0; i < Headlines.Train.Count; i++)
        {
            var h = Headlines.Train[i];
            var p = pairs.Train[i];
            Assert.Equal(PromptTemplate.Alpaca.FormatPrompt(FinancialSentimentDataset.Instruction + " " + h.Text), p.Prompt);
            Assert.Equal(" " + FinancialSentimentDataset.LabelText(h.Label), p.Chosen);
            Assert.NotEqual(p.Chosen, p.Rejected);
            Assert.Contains(p.Rejected.TrimStart(), new[] { "negative", "neutral", "positive" });
            (rejectedFor.TryGetValue(h.Label, out var set) ? set : rejectedFor[h.Label] = new()).Add(p.Rejected);
        }
        // A rule like "always the next label" would make the rejected side predictable from the chosen one.
        Assert.All(rejectedFor.Values, set => Assert.Equal(2, set.Count));
    }

    [Fact]
    public void Held_out_prompts_never_occur_in_training()
    {
        var pairs = SentimentPreferenceDataset.Generate(Headlines);
        var train = pairs.Train.Select(p => p.Prompt).ToHashSet();

        Assert.NotEmpty(pairs.Eval);
        Assert.DoesNotContain(pairs.Eval, p => train.Contains(p.Prompt));
        Assert.DoesNotContain(pairs.Eval, p => FinancialSentimentDataset.TrainCompanies.Any(c => p.Prompt.Contains(c, StringComparison.Ordinal)));
    }

    [Fact]
    public void Written_files_read_back_through_the_generic_preference_loader()
    {
        var pairs = SentimentPreferenceDataset.Generate(Headlines);
        var files = pairs.Write(_dir.Path);

        var read = DatasetLoader.ReadPreferences(DatasetKind.GenericPreference, files.EvalPath).Select(r => r.Example).ToList();

        Assert.Equal(pairs.Eval, read);
    }

    [Fact]
    public void Embedded_default_writes_the_pairs_next_to_the_sft_data()
    {
        var files = EmbeddedDefault.Ensure(cacheRoot: _dir.Path);
        var expected = SentimentPreferenceDataset.Generate(Headlines).Write(Path.Combine(_dir.Path, "expected"));

        Assert.Equal(Path.GetDirectoryName(files.TrainPath), Path.GetDirectoryName(files.PreferenceTrainPath));
        Assert.Equal(File.ReadAllBytes(expected.TrainPath), File.ReadAllBytes(files.PreferenceTrainPath));
        Assert.Equal(File.ReadAllBytes(expected.EvalPath), File.ReadAllBytes(files.PreferenceEvalPath));
    }
}
