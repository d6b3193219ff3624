namespace FedLlm.Privacy;

/// <summary>The standard lists of Rényi orders α at which accountants track privacy; the (ε, δ) conversion takes the
/// best of them, so a list must reach small α (large ε, many rounds) and large α (small ε, few rounds).</summary>
public static class RdpOrders
{
    /// <summary>1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, 5, 6, …, 63, 128, 256, 512: the list of TF-Privacy's
    /// compute_dp_sgd_privacy and of Google's dp_accounting examples. FedLlm's default.</summary>
    public static IReadOnlyList<double> Default { get; } =
        new[] { 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5 }
            .Concat(Enumerable.Range(5, 59).Select(a => (double)a))
            .Concat(new[] { 128.0, 256.0, 512.0 })
            .ToArray();

    /// <summary>1.1, 1.2, …, 10.9, 12, 13, …, 63: Opacus' DEFAULT_ALPHAS, for comparing with Opacus numbers.</summary>
    public static IReadOnlyList<double> Opacus { get; } =
        Enumerable.Range(1, 99).Select(x => 1 + x / 10.0)
            .Concat(Enumerable.Range(12, 52).Select(a => (double)a))
            .ToArray();
}
