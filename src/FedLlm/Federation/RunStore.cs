using System.Text.Json;
using FedLlm.Checkpoints;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>A committed round: everything the server needs to continue exactly.</summary>
public sealed record CommittedRound(
    Dictionary<string, Tensor> Global, Dictionary<string, Tensor> StrategyState, Dictionary<string, Tensor> ClientState,
    IReadOnlyList<RoundRecord> History);

/// <summary>
/// Crash-safe state of a federated run. After round N (1 … R), <c>state-N/</c> is assembled under a temporary name
/// (global adapter, strategy state, client state, history) and renamed into place, then older states are removed;
/// then the round's line is appended to metrics.jsonl (<see cref="MetricsJsonl"/>). A kill at any moment leaves the
/// last committed round intact. The committed states are the truth and metrics.jsonl follows them: a store that does not
/// know the file to hold exactly the rounds before this one (its first commit, or after a failed append) rewrites it
/// atomically from the history instead of appending, and <see cref="LoadLatest"/> rewrites it to the committed rounds, so a
/// kill between a commit and its append neither loses nor duplicates a line once the run is resumed. The history inside a state keeps the record's own PascalCase form and the resumed round
/// comes from its length, so runs committed before metrics.jsonl became snake_case (and named state-0 … state-R−1) resume.
/// </summary>
public sealed class RunStore(string directory)
{
    const string Prefix = "state-";
    const string HistoryFile = "history.json";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    /// <summary>The run folder holding state-N/ and metrics.jsonl.</summary>
    public string Directory { get; } = directory;

    /// <summary>metrics.jsonl, one line per committed round.</summary>
    public string MetricsPath => Path.Combine(Directory, "metrics.jsonl");

    // How many rounds metrics.jsonl is known to hold, line for line, because this store wrote them; null = unknown.
    int? metricsRounds;

    /// <summary>Commits the round <paramref name="history"/> ends with: writes state-N/ (N = history length)
    /// atomically, appends the round's line to metrics.jsonl (or rewrites it when this store does not know its content) and
    /// removes older states.</summary>
    /// <param name="global">The new global adapter.</param>
    /// <param name="strategyState">The strategy's state (<see cref="IFederatedStrategy.State"/>).</param>
    /// <param name="clientState">The clients' state (<see cref="IClientExecutor.SnapshotState"/>).</param>
    /// <param name="history">Every round's record up to this one.</param>
    public void Commit(IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> strategyState,
        IReadOnlyDictionary<string, Tensor> clientState, IReadOnlyList<RoundRecord> history)
    {
        int round = history.Count; // the 1-based number of the round just committed
        System.IO.Directory.CreateDirectory(Directory);
        Io.StagingFolder.RemoveStale(Directory, Prefix);
        string final = Path.Combine(Directory, Prefix + round);
        string staging = Io.StagingFolder.For(Directory, Prefix + round);
        if (System.IO.Directory.Exists(staging)) System.IO.Directory.Delete(staging, recursive: true);
        System.IO.Directory.CreateDirectory(staging);
        SafeTensorsWriter.Write(Path.Combine(staging, "global.safetensors"), global.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        SafeTensorsWriter.Write(Path.Combine(staging, "strategy.safetensors"), strategyState.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        SafeTensorsWriter.Write(Path.Combine(staging, "clients.safetensors"), clientState.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        Io.AtomicFile.WriteAllText(Path.Combine(staging, HistoryFile), JsonSerializer.Serialize(history, Json));
        if (System.IO.Directory.Exists(final)) System.IO.Directory.Delete(final, recursive: true);
        System.IO.Directory.Move(staging, final);
        WriteMetrics(history);
        foreach (var (dir, step) in States())
            if (step < round) System.IO.Directory.Delete(dir, recursive: true);
    }

    void WriteMetrics(IReadOnlyList<RoundRecord> history)
    {
        int known = metricsRounds ?? -1;
        metricsRounds = null; // until this write has completed
        if (known == history.Count - 1 && File.Exists(MetricsPath)) MetricsJsonl.Append(MetricsPath, history[^1]);
        else RewriteMetrics(history);
        metricsRounds = history.Count;
    }

    void RewriteMetrics(IReadOnlyList<RoundRecord> history)
    {
        metricsRounds = null;
        Io.AtomicFile.WriteAllText(MetricsPath, MetricsJsonl.Text(history));
        metricsRounds = history.Count;
    }

    /// <summary>The number (1 … R) of the last committed round, or null when the run has none (without reading its tensors).</summary>
    public int? LatestRound => States().Select(s => (int?)s.Round).Max();

    /// <summary>The last committed round, or null when the run has none.</summary>
    /// <remarks>Removes staging folders left by writers that died mid-commit, and rewrites metrics.jsonl to the committed
    /// rounds (a writer killed between a commit and its append left it a line short, or with a torn last line).</remarks>
    public CommittedRound? LoadLatest()
    {
        Io.StagingFolder.RemoveStale(Directory, Prefix);
        var latest = States().OrderByDescending(s => s.Round).Select(s => s.Dir).FirstOrDefault();
        if (latest is null) return null;
        var history = JsonSerializer.Deserialize<List<RoundRecord>>(File.ReadAllText(Path.Combine(latest, HistoryFile)))
            ?? throw new InvalidDataException($"{latest}: empty {HistoryFile}");
        RewriteMetrics(history);
        return new CommittedRound(Read(Path.Combine(latest, "global.safetensors")), Read(Path.Combine(latest, "strategy.safetensors")),
            Read(Path.Combine(latest, "clients.safetensors")), history);
    }

    IEnumerable<(string Dir, int Round)> States() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.GetDirectories(Directory, Prefix + "*")
                .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d)[Prefix.Length..], out int r), Round: r))
                .Where(x => x.Ok && File.Exists(Path.Combine(x.Dir, HistoryFile)))
                .Select(x => (x.Dir, x.Round))
                .ToList()
            : Enumerable.Empty<(string, int)>();

    static Dictionary<string, Tensor> Read(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return file.Tensors.Keys.ToDictionary(k => k, k => file.Read(k).DetachFromDisposeScope());
    }
}
