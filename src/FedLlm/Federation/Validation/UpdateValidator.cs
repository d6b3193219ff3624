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
/// Checks run cheapest first and stop at the first failure: example count; names, shapes and dtypes (of the weights,
/// then of each tensor set); finiteness of the weights, found by the same pass that computes the norm; finiteness of
/// the tensor sets; the norm bound. Round numbers (replays) and byte sizes are the transport's to
/// check, since only it sees the messages. Nothing here modifies or keeps the tensors.
/// </remarks>
public static class UpdateValidator
{
    /// <summary>How many missing or extra names a reason lists before summarising the rest as a count.</summary>
    private const int NamesListed = 3;

    /// <summary>Checks a client's update against the global adapter: the same tensor names (none missing, none extra), shapes and
    /// dtypes; all values finite; the norm bound; ExampleCount in [1, MaxExampleCount]; every tensor set (SCAFFOLD's control delta) with the same names/shapes, and finite.</summary>
    /// <returns><see cref="UpdateVerdict.Ok"/> (with the norm) or a rejection whose reason names the client and the tensor.</returns>
    /// <exception cref="ArgumentException">The limits themselves are nonsensical (the server's configuration error).</exception>
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
        if (CheckStructure(global, update.Weights, client, "tensor") is { } weightsProblem)
            return UpdateVerdict.Reject(weightsProblem);
        foreach (var (setName, set) in update.TensorSets.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (CheckStructure(global, set, client, SetLabel(setName)) is { } setStructure)
                return UpdateVerdict.Reject(setStructure);

        // One pass per tensor gives the norm and, through it, finiteness: y − x is non-finite exactly where y is (the
        // global is the server's own and finite), so only a tensor whose squared distance is not finite is searched.
        double squares = 0;
        foreach (var name in global.Keys.Order(StringComparer.Ordinal))
        {
            var y = update.Weights[name];
            double part = SquaredDistance(y, global[name]);
            if (!double.IsFinite(part))
            {
                if (NonFinite(y, client, "tensor", name) is { } nonFinite) return UpdateVerdict.Reject(nonFinite);
                part = double.PositiveInfinity; // finite values so large that their difference overflows float32
            }
            squares += part;
        }
        foreach (var (setName, set) in update.TensorSets.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            foreach (var name in global.Keys.Order(StringComparer.Ordinal))
                if (NonFinite(set[name], client, SetLabel(setName), name) is { } nonFinite)
                    return UpdateVerdict.Reject(nonFinite);

        double norm = Math.Sqrt(squares);
        if (limits.MaxUpdateNorm is { } maxNorm && !(norm <= maxNorm))
            return UpdateVerdict.Reject(string.Create(CultureInfo.InvariantCulture,
                $"{client}: update norm ‖y − x‖₂ = {norm:G6} exceeds the bound {maxNorm:G6}")) with { UpdateNorm = norm };
        return UpdateVerdict.Ok with { UpdateNorm = norm };
    }

    /// <summary>The first problem of <paramref name="sent"/> against <paramref name="global"/>'s names, shapes, dtypes
    /// and devices, as a sentence; null when there is none.</summary>
    private static string? CheckStructure(IReadOnlyDictionary<string, Tensor> global, IReadOnlyDictionary<string, Tensor> sent, string client, string what)
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
        return null;
    }

    /// <summary>"client: tensor X has 2 NaN values (of 6)" when <paramref name="tensor"/> holds NaN or ±Inf, else null.</summary>
    private static string? NonFinite(Tensor tensor, string client, string what, string name)
    {
        if (isfinite(tensor).all().item<bool>()) return null;
        long nan = isnan(tensor).sum().item<long>();
        long inf = isinf(tensor).sum().item<long>();
        var kinds = string.Join(" and ", new[] { nan > 0 ? $"{nan} NaN" : null, inf > 0 ? $"{inf} Inf" : null }.OfType<string>());
        return $"{client}: {what} {name} has {kinds} value{(nan + inf == 1 ? "" : "s")} (of {tensor.numel()})";
    }

    /// <summary>‖y − x‖² of one tensor: the difference and its square in the tensors' own precision, the sum
    /// accumulated in float64 so millions of small squares do not lose precision. Non-finite when y holds NaN or ±∞, or
    /// a difference overflows.</summary>
    internal static double SquaredDistance(Tensor y, Tensor x)
    {
        if (y.dtype == ScalarType.Float32 && x.dtype == ScalarType.Float32 && y.device_type == TorchSharp.DeviceType.CPU
            && x.device_type == TorchSharp.DeviceType.CPU && y.is_contiguous() && x.is_contiguous() && y.NumberOfElements == x.NumberOfElements)
            return SquaredDistanceFloat32(y, x);
        using var diff = y.detach() - x.detach();
        diff.mul_(diff); // x·x in place: no second tensor-sized buffer, no implicit Scalar (Runtime.Scalars)
        using var sum = diff.sum(ScalarType.Float64);
        return sum.item<double>();
    }

    /// <summary>The float32 case in one pass over both tensors' memory, split over the cores in fixed pieces (so the
    /// result does not depend on scheduling), with no tensor-sized temporary.</summary>
    /// <remarks>Why: the server screens every arriving update; libtorch's y − x writes a new tensor of the update's size
    /// (fresh pages) and reads it twice more, a large part of an upload's time.</remarks>
    private static double SquaredDistanceFloat32(Tensor y, Tensor x)
    {
        const int Piece = 1 << 20;
        long count = y.NumberOfElements;
        int pieces = (int)((count + Piece - 1) / Piece);
        if (pieces == 0) return 0;
        var sums = new double[pieces];
        var yMemory = new Transfer.TensorMemory(y).Memory;
        var xMemory = new Transfer.TensorMemory(x).Memory;
        void Sum(int piece)
        {
            int start = piece * Piece;
            int length = (int)Math.Min(Piece, count - start);
            var ys = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(yMemory.Span).Slice(start, length);
            var xs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(xMemory.Span).Slice(start, length);
            sums[piece] = SquaredDistance(ys, xs);
        }
        if (pieces == 1) Sum(0);
        else Parallel.For(0, pieces, Sum);
        double total = 0;
        foreach (double part in sums) total += part;
        GC.KeepAlive(y);
        GC.KeepAlive(x);
        return total;
    }

    /// <summary>Σ (y − x)² with each square in float32 and the sum in float64, eight lanes at a time.</summary>
    internal static double SquaredDistance(ReadOnlySpan<float> y, ReadOnlySpan<float> x)
    {
        var accumulator = System.Numerics.Vector<double>.Zero;
        int width = System.Numerics.Vector<float>.Count;
        int i = 0;
        for (; i <= y.Length - width; i += width)
        {
            var d = new System.Numerics.Vector<float>(y[i..]) - new System.Numerics.Vector<float>(x[i..]);
            System.Numerics.Vector.Widen(d * d, out var low, out var high);
            accumulator += low + high;
        }
        double sum = System.Numerics.Vector.Sum(accumulator);
        for (; i < y.Length; i++)
        {
            float d = y[i] - x[i];
            sum += d * d;
        }
        return sum;
    }

    /// <summary>"control delta tensor" for the tensor set "control_delta".</summary>
    private static string SetLabel(string setName) => setName.Replace('_', ' ') + " tensor";

    private static string Plural(List<string> names) => names.Count == 1 ? "" : "s";

    private static string ListNames(List<string> names) =>
        string.Join(", ", names.Take(NamesListed)) + (names.Count > NamesListed ? $" and {names.Count - NamesListed} more" : "");

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
