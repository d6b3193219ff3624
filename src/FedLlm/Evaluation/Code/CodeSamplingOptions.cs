namespace FedLlm.Evaluation.Code;

/// <summary>How many completions to sample per problem, how, and which pass@k to report.</summary>
public sealed record CodeSamplingOptions
{
    /// <summary>Completions per problem (n of the pass@k estimator).</summary>
    public int Samples { get; init; } = 1;

    /// <summary>Sampling temperature; null = greedy for one sample, 0.8 (Codex's setting for pass@10 and up) for more.</summary>
    public double? Temperature { get; init; }

    /// <summary>The k values of pass@k; those above <see cref="Samples"/> are not reported.</summary>
    public IReadOnlyList<int> K { get; init; } = [1, 10, 100];

    /// <summary>Also run MBPP's challenge tests.</summary>
    public bool ChallengeTests { get; init; }

    /// <summary>The sandbox the generated programs run in (limits, interpreter, unsafe mode).</summary>
    public SandboxOptions Sandbox { get; init; } = new();

    /// <summary>The temperature actually used: <see cref="Temperature"/>, else 0 (greedy) for one sample and 0.8 for
    /// several.</summary>
    public double EffectiveTemperature => Temperature ?? (Samples == 1 ? 0.0 : 0.8);

    /// <exception cref="ArgumentException">An invalid combination, such as several greedy samples.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Samples);
        if (EffectiveTemperature < 0) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be ≥ 0");
        // Greedy decoding repeats one completion n times, which makes pass@k for k > 1 meaningless.
        if (Samples > 1 && EffectiveTemperature == 0)
            throw new ArgumentException($"samples={Samples} with temperature 0 would repeat one greedy completion; give a temperature > 0 (e.g. 0.8).");
        if (K.Count == 0 || K.Any(k => k <= 0)) throw new ArgumentException("pass@k needs at least one k, each positive.", nameof(K));
        if (!K.Any(k => k <= Samples))
            throw new ArgumentException($"No k in [{string.Join(", ", K)}] is ≤ samples={Samples}; pass@k needs at least k samples per problem.");
        Sandbox.Validate();
    }

    /// <summary>Reads <c>samples</c>, <c>temperature</c>, <c>k</c>, <c>timeout</c> (seconds), <c>memory_mb</c>, <c>workers</c>, <c>python</c>.</summary>
    internal static CodeSamplingOptions Read(TaskParameterReader parameters)
    {
        var sandbox = new SandboxOptions();
        var timeout = parameters.Double("timeout");
        if (timeout is <= 0) throw new ArgumentException($"Parameter 'timeout' must be a positive number of seconds, got {timeout}.");
        sandbox = sandbox with
        {
            PythonPath = parameters.String("python") ?? sandbox.PythonPath,
            Timeout = timeout is double t ? TimeSpan.FromSeconds(t) : sandbox.Timeout,
            MemoryMegabytes = parameters.Int("memory_mb") ?? sandbox.MemoryMegabytes,
            Workers = parameters.Int("workers") ?? sandbox.Workers,
        };
        var options = new CodeSamplingOptions
        {
            Samples = parameters.Int("samples") ?? 1,
            Temperature = parameters.Double("temperature"),
            Sandbox = sandbox,
        };
        if (parameters.IntList("k") is { } k) options = options with { K = k };
        options.Validate();
        return options;
    }

    internal static readonly string[] ParameterNames = ["samples", "temperature", "k", "timeout", "memory_mb", "workers", "python"];
}
