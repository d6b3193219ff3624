using FedLlm.Federation;
using FedLlm.Tests.Data;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

/// <summary>metrics.jsonl is appended one line per commit, and a resume repairs it to the committed rounds.</summary>
public class RunStoreMetricsTests
{
    static RoundRecord Record(int round) => new()
    {
        Round = round, LearningRate = 0.01 * (round + 1), Clients = ["client-0"], ClientLoss = new Dictionary<string, double> { ["client-0"] = round },
        UpdateNorms = new Dictionary<string, double> { ["client-0"] = 1 }, GlobalStepNorm = 1, BytesSent = 1, BytesReceived = 1, Seconds = 1,
    };

    static List<RoundRecord> History(int rounds) => Enumerable.Range(0, rounds).Select(Record).ToList();

    static void Commit(RunStore store, int rounds)
    {
        using var scope = NewDisposeScope();
        var global = new Dictionary<string, Tensor> { ["w"] = full(2, 2, (float)rounds) };
        store.Commit(global, new Dictionary<string, Tensor>(), new Dictionary<string, Tensor>(), History(rounds));
    }

    static List<int> Rounds(RunStore store) => MetricsJsonl.Read(store.MetricsPath).Select(r => r.Round).ToList();

    [Fact]
    public void Each_commit_appends_its_line_and_leaves_the_earlier_lines_untouched()
    {
        // Prepare: two commits, then a marker in line 1 that a rewrite from the history would erase
        using var dir = new TempDirectory();
        var store = new RunStore(dir.Path);
        Commit(store, 1);
        Commit(store, 2);
        var lines = File.ReadAllLines(store.MetricsPath);
        string marked = lines[0].Replace("\"learning_rate\":0.01", "\"learning_rate\":0.5");
        Assert.NotEqual(lines[0], marked);
        File.WriteAllLines(store.MetricsPath, [marked, lines[1]]);

        // Execute
        Commit(store, 3);

        // Assert: appended, not rewritten
        var after = File.ReadAllLines(store.MetricsPath);
        Assert.Equal([marked, lines[1], MetricsJsonl.Line(Record(2))], after);
    }

    [Theory]
    [InlineData("killed before the append")]
    [InlineData("killed during the append")]
    [InlineData("killed after the append")]
    public void A_resumed_run_neither_loses_nor_duplicates_a_line(string when)
    {
        // Prepare: three rounds committed; the kill leaves metrics.jsonl with 2 lines, 2 lines and a torn third, or 3 lines
        using var dir = new TempDirectory();
        var first = new RunStore(dir.Path);
        Commit(first, 1);
        Commit(first, 2);
        Commit(first, 3);
        var lines = File.ReadAllLines(first.MetricsPath);
        string text = when switch
        {
            "killed before the append" => lines[0] + "\n" + lines[1] + "\n",
            "killed during the append" => lines[0] + "\n" + lines[1] + "\n" + lines[2][..(lines[2].Length / 2)],
            _ => string.Join("", lines.Select(l => l + "\n")),
        };
        File.WriteAllText(first.MetricsPath, text);

        // Execute: a new process resumes and commits round 4
        var resumed = new RunStore(dir.Path);
        var committed = resumed.LoadLatest()!;
        foreach (var t in committed.Global.Values) t.Dispose();
        var afterResume = Rounds(resumed);
        Commit(resumed, 4);

        // Assert
        Assert.Equal(3, committed.History.Count);
        Assert.Equal([0, 1, 2], afterResume);
        Assert.Equal([0, 1, 2, 3], Rounds(resumed));
        Assert.Equal(History(4).Select(r => MetricsJsonl.Line(r)), File.ReadAllLines(resumed.MetricsPath));
    }

    [Fact]
    public void A_store_that_did_not_write_the_file_rewrites_it_on_its_first_commit()
    {
        // Prepare: a stale file of another run in the folder, and no resume
        using var dir = new TempDirectory();
        var store = new RunStore(dir.Path);
        File.WriteAllText(store.MetricsPath, MetricsJsonl.Text(History(5)));

        // Execute
        Commit(store, 1);

        // Assert
        Assert.Equal([0], Rounds(store));
    }
}
