namespace FedLlm.Tracking;

/// <summary>
/// Where a run's scalar metrics go besides the console (Hugging Face's <c>report_to</c>): TensorBoard event files, a
/// CSV file. Names are TensorBoard tags such as <c>train/loss</c>; the step is the optimizer step or the round.
/// </summary>
public interface IMetricsTracker : IDisposable
{
    /// <summary>Records <paramref name="scalars"/> (tag → value) at <paramref name="step"/>.</summary>
    void Log(long step, IReadOnlyDictionary<string, double> scalars);

    /// <summary>Makes everything logged so far readable by another process.</summary>
    void Flush();
}

/// <summary>The trackers of <c>--report-to</c>: a comma-separated list of tensorboard, csv, or none.</summary>
public static class MetricsTrackers
{
    /// <summary>The names --report-to accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tensorboard", "csv", "none"];

    /// <summary>Opens the named trackers under <paramref name="directory"/> (tensorboard: runs/events.out.tfevents.*, as Trainer's logging_dir, csv: metrics.csv).</summary>
    /// <exception cref="ArgumentException">An unknown name (the message lists the known ones).</exception>
    public static IMetricsTracker Open(string? reportTo, string directory)
    {
        var names = (reportTo ?? "none").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => n.ToLowerInvariant()).Distinct().ToList();
        foreach (var name in names)
            if (!Names.Contains(name)) throw new ArgumentException($"--report-to '{name}' is not one of {string.Join(", ", Names)}");
        var trackers = new List<IMetricsTracker>();
        if (names.Contains("tensorboard")) trackers.Add(new TensorBoardWriter(Path.Combine(directory, "runs")));
        if (names.Contains("csv")) trackers.Add(new CsvMetricsWriter(Path.Combine(directory, CsvMetricsWriter.FileName)));
        return new Composite(trackers);
    }

    sealed class Composite(IReadOnlyList<IMetricsTracker> trackers) : IMetricsTracker
    {
        public void Log(long step, IReadOnlyDictionary<string, double> scalars) { foreach (var t in trackers) t.Log(step, scalars); }
        public void Flush() { foreach (var t in trackers) t.Flush(); }
        public void Dispose() { foreach (var t in trackers) t.Dispose(); }
    }
}
