using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Federation.Validation;

/// <summary>
/// The server's gate for a client's update before any strategy sees it: a malformed or hostile update is refused with a
/// reason, and the round goes on without it. Strategies assume name-keyed tensors that match the global adapter; this
/// is where that assumption is checked, as Flower's FedOpt checks keys and shapes before aggregating.
/// </summary>
/// <remarks>
/// Checks run cheapest first and stop at the first failure: example count, tensor names, shapes and dtypes, finiteness,
/// then the norm bound (which needs the shapes to match). Round numbers (replays) and byte sizes are the transport's to
/// check, since only it sees the messages. Nothing here modifies or keeps the tensors.
/// </remarks>
public static class UpdateValidator
{
    /// <summary>How many missing or extra names a reason lists before summarising the rest as a count.</summary>
    private const int NamesListed = 3;

    /// Checks a client's update against the global adapter: the same tensor names (none missing, none extra), shapes and
    /// dtypes; all values finite; the norm bound; ExampleCount in [1, MaxExampleCount]; ControlDelta (SCAFFOLD) with the same names/shapes and finite when present.
    public static UpdateVerdict Validate(IReadOnlyDictionary<string, Tensor> global, ClientUpdate update, UpdateLimits limits)
    {
        ArgumentNullException.ThrowIfNull(global);
        ArgumentNullException.ThrowIfNull(update);
        ArgumentNullException.ThrowIfNull(limits);
        if (limits.MaxUpdateNorm is { } bound && !(bound >= 0 && double.IsFinite(bound)))
            throw new ArgumentException($"MaxUpdateNorm must be a finite number ≥ 0 (or unset), got {bound}", nameof(limits));
        ArgumentOutOfRangeException.ThrowIfLessThan(limits.MaxExampleCount, 1L, nameof(limits.MaxExampleCount));

        string client = string.IsNullOrWhiteSpace(update.ClientId) ? "client with an empty id" : update.ClientId;
        if (string.IsNullOrWhiteSpace(update.ClientId))
            return UpdateVerdict.Reject($"{client}: an update must name its client");
        if (update.ExampleCount < 1)
            return UpdateVerdict.Reject($"{client}: example count {update.ExampleCount} is not positive; FedAvg weights updates by it");
        if (update.ExampleCount > limits.MaxExampleCount)
            return UpdateVerdict.Reject($"{client}: example count {update.ExampleCount} exceeds the server's limit of {limits.MaxExampleCount}");
        if (update.Weights is null)
            return UpdateVerdict.Reject($"{client}: the update carries no weights");

        using var scope = NewDisposeScope();
        if (CheckTensors(global, update.Weights, client, "tensor") is { } weightsProblem)
            return UpdateVerdict.Reject(weightsProblem);
        if (update.ControlDelta is not null && CheckTensors(global, update.ControlDelta, client, "control delta tensor") is { } controlProblem)
            return UpdateVerdict.Reject(controlProblem);

        double norm = DistanceNorm(update.Weights, global);
        if (limits.MaxUpdateNorm is { } maxNorm && norm > maxNorm)
            return UpdateVerdict.Reject(string.Create(CultureInfo.InvariantCulture,
                $"{client}: update norm ‖y − x‖₂ = {norm:G6} exceeds the bound {maxNorm:G6}")) with { UpdateNorm = norm };
        return UpdateVerdict.Ok with { UpdateNorm = norm };
    }

    /// <summary>The first problem of <paramref name="sent"/> against <paramref name="global"/>'s names, shapes, dtypes
    /// and finiteness, as a sentence; null when there is none.</summary>
    private static string? CheckTensors(IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> sent, string client, string what)
    {
        var missing = global.Keys.Where(k => !sent.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            return $"{client}: {what}{Plural(missing)} {ListNames(missing)} {(missing.Count == 1 ? "is" : "are")} missing " +
                $"({sent.Count} sent, the global adapter has {global.Count})";
        var extra = sent.Keys.Where(k => !global.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            return $"{client}: {what}{Plural(extra)} {ListNames(extra)} {(extra.Count == 1 ? "is" : "are")} not in the global adapter";

        foreach (var name in global.Keys.Order(StringComparer.Ordinal))
        {
            var expected = global[name];
            var actual = sent[name];
            if (actual is null || actual.IsInvalid)
                return $"{client}: {what} {name} has no data";
            if (!actual.shape.SequenceEqual(expected.shape))
                return $"{client}: {what} {name} has shape {Shape(actual)}, global has {Shape(expected)}";
            if (actual.dtype != expected.dtype)
                return $"{client}: {what} {name} has dtype {actual.dtype}, global has {expected.dtype}";
            if (actual.device_type != expected.device_type)
                return $"{client}: {what} {name} is on {actual.device}, global on {expected.device}";
        }
        foreach (var name in global.Keys.Order(StringComparer.Ordinal))
        {
            var actual = sent[name];
            if (isfinite(actual).all().item<bool>()) continue;
            long nan = isnan(actual).sum().item<long>();
            long inf = isinf(actual).sum().item<long>();
            var kinds = string.Join(" and ", new[] { nan > 0 ? $"{nan} NaN" : null, inf > 0 ? $"{inf} Inf" : null }.OfType<string>());
            return $"{client}: {what} {name} has {kinds} value{(nan + inf == 1 ? "" : "s")} (of {actual.numel()})";
        }
        return null;
    }

    /// <summary>‖a − b‖₂ over all tensors, accumulated in float64 so millions of small squares do not lose precision.</summary>
    private static double DistanceNorm(IReadOnlyDictionary<string, Tensor> a, IReadOnlyDictionary<string, Tensor> b)
    {
        double sum = 0;
        foreach (var name in b.Keys.Order(StringComparer.Ordinal))
        {
            using var diff = a[name].detach().to(ScalarType.Float64) - b[name].detach().to(ScalarType.Float64);
            sum += diff.square().sum().item<double>();
        }
        return Math.Sqrt(sum);
    }

    private static string Plural(List<string> names) => names.Count == 1 ? "" : "s";

    private static string ListNames(List<string> names) =>
        string.Join(", ", names.Take(NamesListed)) + (names.Count > NamesListed ? $" and {names.Count - NamesListed} more" : "");

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
