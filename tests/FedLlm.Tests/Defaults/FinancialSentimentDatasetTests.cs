using System.Security.Cryptography;
using FedLlm.Data;
using FedLlm.Defaults;
using FedLlm.Tests.Data;
using Xunit;

namespace FedLlm.Tests.Defaults;

public sealed class FinancialSentimentDatasetTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static readonly FinancialSentimentDataset Default = FinancialSentimentDataset.Generate();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Same_seed_gives_identical_bytes_and_another_seed_differs()
    {
        var a = FinancialSentimentDataset.Generate().Write(Path.Combine(_dir.Path, "a"));
        var b = FinancialSentimentDataset.Generate().Write(Path.Combine(_dir.Path, "b"));
        var c = FinancialSentimentDataset.Generate(new FinancialSentimentOptions { Seed = 7 }).Write(Path.Combine(_dir.Path, "c"));

        Assert.Equal(File.ReadAllBytes(a.TrainPath), File.ReadAllBytes(b.TrainPath));
        Assert.Equal(File.ReadAllBytes(a.EvalPath), File.ReadAllBytes(b.EvalPath));
        Assert.NotEqual(File.ReadAllBytes(a.TrainPath), File.ReadAllBytes(c.TrainPath));
    }

    [Fact]
    public void Default_files_are_pinned_so_any_change_to_the_generator_is_deliberate()
    {
        // Runs, checkpoints and reported scores refer to these exact files. If you change phrases, sizes or the RNG on
        // purpose, update the hashes (and the committed default tokenizer fixture, which is trained on this data).
        var files = Default.Write(_dir.Path);

        Assert.Equal("0e57358e718a3fcdfe239bb2b268c5b1cf90b932996733b1950fc1924ffdc8bd", Sha256(files.TrainPath));
        Assert.Equal("461129e4b9633ca54021d558f5a0362ad6478cde2d9e27575cc3eae92f92a11c", Sha256(files.EvalPath));
    }

    [Fact]
    public void Sizes_and_labels_are_exactly_balanced()
    {
        Assert.Equal(2001, Default.Train.Count);
        Assert.Equal(300, Default.Eval.Count);
        Assert.All(Default.Train.GroupBy(h => h.Label), g => Assert.Equal(667, g.Count()));
        Assert.All(Default.Eval.GroupBy(h => h.Label), g => Assert.Equal(100, g.Count()));
        Assert.Equal(3, Default.Train.Select(h => h.Label).Distinct().Count());
    }

    [Fact]
    public void Splits_are_shuffled_not_grouped_by_label()
    {
        // A label-sorted file would train the model on one class at a time.
        var firstHundred = Default.Train.Take(100).Select(h => h.Label).Distinct().Count();
        Assert.Equal(3, firstHundred);
    }

    [Fact]
    public void Held_out_split_shares_no_company_no_move_event_pair_and_no_headline_with_training()
    {
        var trainCompanies = Default.Train.Select(h => h.Company).ToHashSet();
        var trainPairs = Default.Train.Select(h => (h.Move, h.Event)).ToHashSet();
        var trainTexts = Default.Train.Select(h => h.Text).ToHashSet();

        Assert.All(Default.Eval, h =>
        {
            Assert.DoesNotContain(h.Company, trainCompanies);
            Assert.DoesNotContain((h.Move, h.Event), trainPairs);
            Assert.DoesNotContain(h.Text, trainTexts);
        });
    }

    [Fact]
    public void Every_held_out_move_and_event_is_seen_in_training_so_generalisation_is_possible()
    {
        var trainMoves = Default.Train.Select(h => h.Move).ToHashSet();
        var trainEvents = Default.Train.Select(h => h.Event).ToHashSet();

        Assert.All(Default.Eval, h =>
        {
            Assert.Contains(h.Move, trainMoves);
            Assert.Contains(h.Event, trainEvents);
        });
    }

    [Fact]
    public void Each_phrase_belongs_to_exactly_one_label()
    {
        var all = Default.Train.Concat(Default.Eval).ToList();

        Assert.All(all.GroupBy(h => h.Move), g => Assert.Single(g.Select(h => h.Label).Distinct()));
        Assert.All(all.GroupBy(h => h.Event), g => Assert.Single(g.Select(h => h.Label).Distinct()));
        Assert.Equal(all.Count, all.Select(h => h.Text).Distinct().Count());
    }

    [Fact]
    public void Written_files_are_alpaca_schema_and_read_back_as_fingpt_examples()
    {
        var files = Default.Write(_dir.Path);

        var train = AlpacaReader.ReadAll(files.TrainPath);
        var eval = AlpacaReader.ReadAll(files.EvalPath);

        Assert.Equal(2001, train.Report.RecordsRead);
        Assert.Equal(300, eval.Report.RecordsRead);
        var first = Default.Train[0];
        Assert.Equal(
            new InstructionExample(
                "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}. " + first.Text,
                FinancialSentimentDataset.LabelText(first.Label)),
            train.Examples[0]);
        Assert.StartsWith("{\"instruction\":\"What is the sentiment", File.ReadLines(files.TrainPath).First());
    }

    [Fact]
    public void Headline_is_built_from_its_parts()
    {
        Assert.All(Default.Train.Take(50), h =>
        {
            Assert.Contains(h.Company, h.Text);
            Assert.Contains(" " + h.Move + " ", h.Text);
            Assert.EndsWith(h.Event, h.Text);
        });
    }

    [Fact]
    public void Asking_for_more_headlines_than_the_parts_allow_fails()
    {
        // Held-out pool per label: 40 pairs x 3 frames x 10 companies.
        Assert.Throws<ArgumentOutOfRangeException>(
            () => FinancialSentimentDataset.Generate(new FinancialSentimentOptions { EvalPerLabel = 1201 }));
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
}
