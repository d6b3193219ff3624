using System.Globalization;
using System.Text;

namespace FedLlm.Tracking;

/// <summary>
/// metrics.csv: one row per logged step, one column per metric (<c>step</c> first, then metric names in order of first
/// appearance), empty where a step did not log a metric. A new metric rewrites the file with the wider header, as
/// Lightning's CSVLogger does, so the file is always one rectangular table that pandas or a spreadsheet reads.
/// </summary>
public sealed class CsvMetricsWriter(string path) : IMetricsTracker
{
    /// <summary>The file name in the run folder.</summary>
    public const string FileName = "metrics.csv";

    private readonly List<string> columns = new();
    private readonly List<(long Step, Dictionary<string, double> Values)> rows = new();

    /// <summary>The CSV file written.</summary>
    public string Path { get; } = path;

    /// <inheritdoc/>
    /// <remarks>A new metric adds a column and rewrites the file, so every row has every column.</remarks>
    public void Log(long step, IReadOnlyDictionary<string, double> scalars)
    {
        bool widened = false;
        foreach (var name in scalars.Keys)
            if (!columns.Contains(name)) { columns.Add(name); widened = true; }
        rows.Add((step, scalars.ToDictionary(kv => kv.Key, kv => kv.Value)));
        if (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path)) is { } folder) Directory.CreateDirectory(folder);
        if (widened || rows.Count == 1) Io.AtomicFile.WriteAllText(Path, Header() + string.Concat(rows.Select(Row)));
        else File.AppendAllText(Path, Row(rows[^1]));
    }

    string Header() => "step," + string.Join(",", columns.Select(Quote)) + "\n";

    string Row((long Step, Dictionary<string, double> Values) row) =>
        row.Step.ToString(CultureInfo.InvariantCulture) + "," +
        string.Join(",", columns.Select(c => row.Values.TryGetValue(c, out var v) ? v.ToString("R", CultureInfo.InvariantCulture) : "")) + "\n";

    static string Quote(string name) => name.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + name.Replace("\"", "\"\"") + "\"" : name;

    /// <summary>Nothing to do: every <see cref="Log"/> writes the file.</summary>
    public void Flush() { }

    /// <summary>Nothing to free: the file is not held open.</summary>
    public void Dispose() { }
}
