using FedLlm.Federation;

namespace FedLlm.Monitoring;

/// <summary>Where a participant is in the current round.</summary>
public enum ParticipantState
{
    /// <summary>Known to the run but not sampled in the open round.</summary>
    Joined,

    /// <summary>Sampled in the open round; no update yet.</summary>
    Training,

    /// <summary>Its update of the open round arrived.</summary>
    Submitted,

    /// <summary>Its update of the open round was refused.</summary>
    Refused,

    /// <summary>Sampled, but the round closed without its update.</summary>
    Late,
}

/// <summary>What a transport knows of a participant: connected now, updates accepted and refused so far.</summary>
public sealed record RosterEntry(string Id, bool Connected, int Accepted, int Refused);

/// <summary>One participant as the dashboard shows it.</summary>
public sealed record ParticipantView(string Id, string State, bool Connected, int Accepted, int Refused);

/// <summary>One committed round as the dashboard charts it.</summary>
public sealed record RoundView(int Round, double TrainLoss, double? EvalLoss, double? EvalScore, long BytesSent, long BytesReceived,
    double Seconds, IReadOnlyList<string> Clients, IReadOnlyDictionary<string, double> Metrics);

/// <summary>One algorithm's run so far.</summary>
public sealed record RunView(string Name, int TotalRounds, IReadOnlyList<RoundView> Rounds);

/// <summary>A differential-privacy budget spent so far: (ε, δ).</summary>
public sealed record PrivacyBudget(double Epsilon, double Delta);

/// <summary>Everything the dashboard page shows, as one JSON document.</summary>
public sealed record DashboardSnapshot(string Title, string Status, string? Current, int? OpenRound, IReadOnlyList<RunView> Runs,
    IReadOnlyList<ParticipantView> Participants, IReadOnlyDictionary<string, int> ParticipantCounts, long BytesSent, long BytesReceived,
    PrivacyBudget? Privacy, DateTimeOffset UpdatedAt);

/// <summary>
/// The live state of a federated run for a read-only dashboard: rounds and their metrics (it is the round loop's
/// <see cref="IProgress{T}"/>), participants' states (set by <see cref="MonitoredClients"/> around each round, refined by
/// the transport's <see cref="Roster"/>), bytes on the wire and the privacy budget when one is spent.
/// </summary>
/// <remarks>Thread-safe: the round loop writes while the web server reads <see cref="Snapshot"/>.</remarks>
public sealed class RunMonitor(string title) : IProgress<RoundRecord>
{
    private readonly object gate = new();
    private readonly List<(string Name, int TotalRounds, List<RoundView> Rounds)> runs = new();
    private readonly Dictionary<string, ParticipantState> states = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> refusedAtRoundStart = new(StringComparer.Ordinal);
    private int? openRound;
    private bool finished;
    private PrivacyBudget? privacy;

    /// <summary>Round metrics (eval or task metrics of a <see cref="RoundRecord"/>) read as the privacy budget spent so far.</summary>
    public const string EpsilonMetric = "dp/epsilon", DeltaMetric = "dp/delta";

    /// <summary>What the transport knows of each participant (connected, accepted, refused), or null (in-process clients).</summary>
    public Func<IReadOnlyList<RosterEntry>>? Roster { get; set; }

    /// <summary>Starts charting a new algorithm's run (simulate runs several one after another).</summary>
    public void BeginRun(string name, int totalRounds, IEnumerable<string> participants)
    {
        lock (gate)
        {
            runs.Add((name, totalRounds, new List<RoundView>()));
            states.Clear();
            foreach (var id in participants) states[id] = ParticipantState.Joined;
            openRound = null;
            finished = false;
        }
    }

    /// <summary>Marks the run finished (the page stops saying "running").</summary>
    public void Finish() { lock (gate) { finished = true; openRound = null; } }

    /// <summary>Records the (ε, δ) spent so far, for the page.</summary>
    public void SetPrivacyBudget(double epsilon, double delta) { lock (gate) privacy = new PrivacyBudget(epsilon, delta); }

    /// <summary>A round opened: its sampled participants are training, everyone else waits.</summary>
    public void RoundStarted(int round, IEnumerable<string> sampled)
    {
        var roster = Roster?.Invoke();
        lock (gate)
        {
            openRound = round;
            foreach (var id in states.Keys.ToList()) states[id] = ParticipantState.Joined;
            foreach (var id in sampled) states[id] = ParticipantState.Training;
            refusedAtRoundStart.Clear();
            foreach (var entry in roster ?? []) refusedAtRoundStart[entry.Id] = entry.Refused;
        }
    }

    /// <summary>A round's updates are in: who submitted, and who was sampled but sent nothing in time.</summary>
    public void RoundClosed(IEnumerable<string> sampled, IEnumerable<string> submitted)
    {
        var roster = Roster?.Invoke()?.ToDictionary(e => e.Id, StringComparer.Ordinal);
        var arrived = submitted.ToHashSet(StringComparer.Ordinal);
        lock (gate)
        {
            foreach (var id in sampled)
            {
                bool refused = roster is not null && roster.TryGetValue(id, out var entry)
                    && entry.Refused > refusedAtRoundStart.GetValueOrDefault(id);
                states[id] = arrived.Contains(id) ? ParticipantState.Submitted : refused ? ParticipantState.Refused : ParticipantState.Late;
            }
            openRound = null;
        }
    }

    /// <summary>Takes a round's record: its metrics, losses and traffic go into the series the page charts.</summary>
    public void Report(RoundRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var metrics = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (k, v) in record.EvalMetrics ?? new Dictionary<string, double>()) metrics[k] = v;
        foreach (var (k, v) in record.TaskMetrics ?? new Dictionary<string, double>()) metrics[k] = v;
        var losses = record.ClientLoss.Values.Where(double.IsFinite).ToList();
        var view = new RoundView(record.Round, losses.Count > 0 ? losses.Average() : double.NaN, record.EvalLoss, record.EvalScore,
            record.BytesSent, record.BytesReceived, record.Seconds, record.Clients, metrics);
        lock (gate)
        {
            // A private run that reports its spent budget as round metrics shows it without further wiring.
            if (metrics.TryGetValue(EpsilonMetric, out var epsilon) && metrics.TryGetValue(DeltaMetric, out var delta))
                privacy = new PrivacyBudget(epsilon, delta);
            if (runs.Count == 0) runs.Add(("run", record.Round + 1, new List<RoundView>()));
            var rounds = runs[^1].Rounds;
            rounds.RemoveAll(r => r.Round == record.Round);
            rounds.Add(view);
        }
    }

    /// <summary>A consistent copy of everything the page shows (thread-safe).</summary>
    public DashboardSnapshot Snapshot()
    {
        var roster = Roster?.Invoke()?.ToDictionary(e => e.Id, StringComparer.Ordinal);
        lock (gate)
        {
            var ids = states.Keys.Concat(roster?.Keys ?? Enumerable.Empty<string>()).Distinct(StringComparer.Ordinal)
                .OrderBy(id => id.Length).ThenBy(id => id, StringComparer.Ordinal);
            var participants = ids.Select(id =>
            {
                var state = states.GetValueOrDefault(id, ParticipantState.Joined);
                var entry = roster?.GetValueOrDefault(id);
                return new ParticipantView(id, state.ToString().ToLowerInvariant(), entry?.Connected ?? true, entry?.Accepted ?? 0, entry?.Refused ?? 0);
            }).ToList();
            var counts = Enum.GetValues<ParticipantState>().ToDictionary(s => s.ToString().ToLowerInvariant(),
                s => participants.Count(p => p.State == s.ToString().ToLowerInvariant()));
            var runViews = runs.Select(r => new RunView(r.Name, r.TotalRounds, r.Rounds.OrderBy(x => x.Round).ToList())).ToList();
            return new DashboardSnapshot(title, finished ? "finished" : runs.Count == 0 ? "starting" : "running", runs.Count > 0 ? runs[^1].Name : null,
                openRound, runViews, participants, counts,
                runViews.Sum(r => r.Rounds.Sum(x => x.BytesSent)), runViews.Sum(r => r.Rounds.Sum(x => x.BytesReceived)), privacy, DateTimeOffset.UtcNow);
        }
    }
}
