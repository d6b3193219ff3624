using System.Globalization;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// Secure aggregation of a run (YAML section <c>secure_aggregation:</c>): the reconstruction threshold, SecAgg+'s
/// neighbour count, the fixed-point quantisation, and how updates are weighted. Travels to the clients as instruction
/// config keys (<see cref="ToConfig"/>), so a client needs no settings of its own.
/// </summary>
/// <remarks>Validation names the YAML keys, because this record is what run.yaml maps onto.</remarks>
public sealed record SecureAggregationOptions
{
    /// <summary>Instruction config keys.</summary>
    public const string ThresholdKey = "secagg_threshold", NeighboursKey = "secagg_neighbours", BitsKey = "secagg_bits",
        RangeKey = "secagg_range", MaxWeightKey = "secagg_max_weight";

    /// <summary>t: shares needed to rebuild a client's secret, and answers needed in every phase; null = a strict
    /// majority of each client's share holders (⌊h/2⌋ + 1, h = neighbours + 1).</summary>
    public int? Threshold { get; init; }

    /// <summary>k (even): SecAgg+'s neighbours per client; null = every other client of the round (SecAgg).</summary>
    public int? Neighbours { get; init; }

    /// <summary>b: each coordinate becomes an integer in [0, 2^b − 1]; clients per round × (2^b − 1) must stay below 2^32.</summary>
    public int QuantisationBits { get; init; } = 24;

    /// <summary>r: each coordinate of Δ is clipped to [−r, r] before quantisation (error ≤ r/(2^b − 1) per value).</summary>
    public double QuantisationRange { get; init; } = 1.0;

    /// <summary>With a value W, client i's Δ is weighted by min(1, n_i/W) (Flower's max_weight) and the server divides by
    /// the securely summed weights; null = equal weights (what DP needs).</summary>
    public double? MaxWeight { get; init; }

    /// <summary>Each client's share holders when <paramref name="clientsPerRound"/> clients take part: neighbours + 1.</summary>
    public int Holders(int clientsPerRound) => Neighbours is { } k && k < clientsPerRound - 1 ? k + 1 : clientsPerRound;

    /// <summary>t for <paramref name="clientsPerRound"/> clients.</summary>
    public int ResolvedThreshold(int clientsPerRound) => Threshold ?? Holders(clientsPerRound) / 2 + 1;

    /// <summary>Every problem, naming the YAML keys; empty when valid.</summary>
    public IReadOnlyList<string> Failures(FederationOptions federation)
    {
        ArgumentNullException.ThrowIfNull(federation);
        var failures = new List<string>();
        int m = Math.Min(federation.ClientsPerRound, federation.TotalClients);
        if (m < 2) failures.Add($"secure_aggregation needs at least 2 clients per round, got {m}");
        if (Neighbours is { } k && (k < 2 || k % 2 != 0))
            failures.Add($"secure_aggregation.neighbours must be an even number ≥ 2 (SecAgg+'s ring graph), got {k}");
        if (QuantisationBits is < 1 or > 31) failures.Add($"secure_aggregation.quantisation_bits must be in [1, 31], got {QuantisationBits}");
        else if (m > FixedPointQuantiser.MaxSummands(QuantisationBits))
            failures.Add($"secure_aggregation.quantisation_bits {QuantisationBits}: {m} clients per round × (2^{QuantisationBits} − 1) overflows the ring Z_2^32; use at most {32 - (int)Math.Ceiling(Math.Log2(m + 1))} bits");
        if (!(QuantisationRange > 0) || double.IsInfinity(QuantisationRange))
            failures.Add($"secure_aggregation.quantisation_range must be positive and finite, got {QuantisationRange}");
        if (MaxWeight is { } w && (!(w > 0) || double.IsInfinity(w))) failures.Add($"secure_aggregation.max_weight must be positive and finite, got {w}");
        bool graphValid = Neighbours is null || (Neighbours >= 2 && Neighbours % 2 == 0);
        if (m >= 2 && graphValid)
        {
            int h = Holders(m), t = ResolvedThreshold(m);
            if (t < 2 || t > h) failures.Add($"secure_aggregation.threshold {t} must be in [2, {h}] (each client's secrets have {h} holders)");
            else if (2 * t <= h)
                failures.Add($"secure_aggregation.threshold {t} must be more than half of each client's {h} share holders, else the server could rebuild both a client's mask seed and its masking key");
        }
        return failures;
    }

    /// <summary>The instruction config keys of these options for <paramref name="clientsPerRound"/> clients.</summary>
    public IReadOnlyDictionary<string, string> ToConfig(int clientsPerRound)
    {
        var config = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [ThresholdKey] = ResolvedThreshold(clientsPerRound).ToString(CultureInfo.InvariantCulture),
            [BitsKey] = QuantisationBits.ToString(CultureInfo.InvariantCulture),
            [RangeKey] = ClientInstructions.FormatNumber(QuantisationRange),
        };
        if (Neighbours is { } k) config[NeighboursKey] = k.ToString(CultureInfo.InvariantCulture);
        if (MaxWeight is { } w) config[MaxWeightKey] = ClientInstructions.FormatNumber(w);
        return config;
    }

    /// <summary>The options the instructions carry, or null when they ask for no secure aggregation.</summary>
    public static SecureAggregationOptions? FromConfig(ClientInstructions instructions)
    {
        ArgumentNullException.ThrowIfNull(instructions);
        if (!instructions.Config.ContainsKey(ThresholdKey)) return null;
        return new SecureAggregationOptions
        {
            Threshold = (int)instructions.Number(ThresholdKey),
            Neighbours = instructions.Config.ContainsKey(NeighboursKey) ? (int)instructions.Number(NeighboursKey) : null,
            QuantisationBits = (int)instructions.Number(BitsKey),
            QuantisationRange = instructions.Number(RangeKey),
            MaxWeight = instructions.Config.ContainsKey(MaxWeightKey) ? instructions.Number(MaxWeightKey) : null,
        };
    }
}
