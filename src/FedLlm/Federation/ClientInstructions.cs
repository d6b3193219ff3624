using System.Globalization;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// The server's instructions to the clients of one round, shaped like Flower's FitIns: a config map and named tensor
/// sets, plus the names of the client hooks (<see cref="IClientHooks"/>) that read them. The federation core and the wire
/// carry them without looking inside, so an algorithm with client-side behaviour adds a hook and keys, never fields.
/// </summary>
/// <param name="Round">The round index, as the server loop numbers it.</param>
/// <param name="LearningRate">The client's local learning rate for this round (constant within the round).</param>
/// <remarks>Tensor ownership: the strategy that creates the instructions hands its tensors to the caller (the round
/// loop), which disposes them when the round is over. Receivers never modify them.</remarks>
public sealed record ClientInstructions(int Round, double LearningRate)
{
    static readonly IReadOnlyDictionary<string, string> NoConfig = new Dictionary<string, string>();
    static readonly IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> NoTensorSets =
        new Dictionary<string, IReadOnlyDictionary<string, Tensor>>();

    /// <summary>Client hooks to run around local training, in order (e.g. "fedprox", "scaffold"); empty = plain training.</summary>
    public IReadOnlyList<string> Hooks { get; init; } = [];

    /// <summary>Scalar settings for the hooks ("proximal_mu" …), as invariant-culture text so that numbers cross the wire
    /// bit for bit (<see cref="Number"/> reads them).</summary>
    public IReadOnlyDictionary<string, string> Config { get; init; } = NoConfig;

    /// <summary>Named tensor sets for the hooks (SCAFFOLD's "server_control"), each name-keyed like the adapter.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> TensorSets { get; init; } = NoTensorSets;

    /// <summary>Tensor sets every update must carry back (SCAFFOLD's "control_delta"), each with exactly the global
    /// adapter's keys, shapes and dtypes; the server refuses an update that lacks one or adds another.</summary>
    public IReadOnlyList<string> ReturnedTensorSets { get; init; } = [];

    /// <summary>Writes a number so that <see cref="Number"/> reads back the same double.</summary>
    public static string FormatNumber(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>The number under <paramref name="key"/> of <see cref="Config"/>.</summary>
    /// <exception cref="InvalidOperationException">The key is missing or not a number (names the key).</exception>
    public double Number(string key)
    {
        if (!Config.TryGetValue(key, out var text))
            throw new InvalidOperationException($"round {RoundRecord.NumberOf(Round)}: the instructions have no '{key}' (keys: {string.Join(", ", Config.Keys)})");
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new InvalidOperationException($"round {RoundRecord.NumberOf(Round)}: instruction '{key}' is '{text}', not a number");
        return value;
    }

    /// <summary>The tensor set <paramref name="name"/>, or an empty set when the server sent none under that name.</summary>
    public IReadOnlyDictionary<string, Tensor> TensorSet(string name) =>
        TensorSets.TryGetValue(name, out var set) ? set : new Dictionary<string, Tensor>();

    /// <summary>Frees every tensor of <see cref="TensorSets"/> (the round loop calls this when the round is over).</summary>
    public void DisposeTensors()
    {
        foreach (var set in TensorSets.Values) AdapterTensors.Dispose(set);
    }
}
