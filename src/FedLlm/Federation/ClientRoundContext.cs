using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>One trainable LoRA tensor of the client's model under its PEFT key, the key every adapter map uses.</summary>
public readonly record struct TrainableTensor(string Key, Tensor Parameter);

/// <summary>
/// What client hooks see of one client's round: the instructions, the global adapter x, the trainable parameters, the
/// client's persistent state, and, after training, y_i. Hooks add loss terms and after-step actions before training and
/// tensor sets and metrics after it; the context frees what hooks <see cref="Track"/> when the round ends.
/// </summary>
public sealed class ClientRoundContext : IDisposable
{
    readonly List<Func<Tensor>> extraLosses = new();
    readonly List<Action<double>> afterSteps = new();
    readonly List<Action> beforeClips = new();
    readonly List<IReadOnlyDictionary<string, Tensor>> tracked = new();
    readonly Dictionary<string, IReadOnlyDictionary<string, Tensor>> outgoing = new(StringComparer.Ordinal);
    readonly Dictionary<string, double> metrics = new(StringComparer.Ordinal);

    /// <summary>Creates the context of one client's round.</summary>
    public ClientRoundContext(string clientId, ClientInstructions instructions, IReadOnlyDictionary<string, Tensor> global,
        IReadOnlyList<TrainableTensor> trainable, ClientState state, int localSteps)
    {
        ClientId = clientId;
        Instructions = instructions;
        Global = global;
        Trainable = trainable;
        State = state;
        LocalSteps = localSteps;
    }

    /// <summary>The client's identity.</summary>
    public string ClientId { get; }

    /// <summary>The server's instructions for this round.</summary>
    public ClientInstructions Instructions { get; }

    /// <summary>x, the global adapter the round started from (PEFT keys); read-only.</summary>
    public IReadOnlyDictionary<string, Tensor> Global { get; }

    /// <summary>The live LoRA parameters being trained, under PEFT keys.</summary>
    public IReadOnlyList<TrainableTensor> Trainable { get; }

    /// <summary>What this client keeps between rounds.</summary>
    public ClientState State { get; }

    /// <summary>K, the configured number of local optimizer steps.</summary>
    public int LocalSteps { get; }

    /// <summary>The round's local learning rate η_l.</summary>
    public double LearningRate => Instructions.LearningRate;

    /// <summary>y_i, the adapter after local training; null until training has finished.</summary>
    public IReadOnlyDictionary<string, Tensor>? Local { get; internal set; }

    /// <summary>
    /// Makes the update carry <paramref name="weights"/> instead of the current <see cref="Local"/> (client-side
    /// clipping, local DP noise, a simulated attacker): what a hook replaces is freed when the round ends, and later
    /// hooks see the replacement. Keys, shapes and dtypes must be the global adapter's.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called before training finished.</exception>
    /// <exception cref="ArgumentException">The layout differs from the global adapter's.</exception>
    public void ReplaceLocal(IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (Local is null) throw new InvalidOperationException("the local adapter can only be replaced after training");
        if (Aggregation.TensorMaps.FindMismatch(Global, weights) is { } mismatch)
            throw new ArgumentException($"replacement adapter: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(weights));
        foreach (var t in weights.Values) t.DetachFromDisposeScope();
        Track(Local);
        Local = weights;
    }

    /// <summary>Runs a second local training on the client's own data, set by the client (null where none can run).</summary>
    internal Func<IReadOnlyDictionary<string, Tensor>, Func<Tensor>?, Dictionary<string, Tensor>>? SecondTraining { get; set; }

    /// <summary>
    /// Trains another adapter on this client's own data for <see cref="LocalSteps"/> steps at the round's learning rate,
    /// from <paramref name="start"/>, with <paramref name="extraLoss"/> (built on <see cref="Trainable"/>, the same live
    /// parameters) added to every step's loss: Ditto's personal adapter beside the global one. Returns the trained
    /// adapter, which the caller owns; the model's adapters hold <see cref="Local"/> again afterwards. The sample of data
    /// is drawn with a seed of its own, so the second training does not repeat the first one's batches.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called before training finished, or where no second training can run.</exception>
    public Dictionary<string, Tensor> TrainAnother(IReadOnlyDictionary<string, Tensor> start, Func<Tensor>? extraLoss)
    {
        ArgumentNullException.ThrowIfNull(start);
        if (Local is null) throw new InvalidOperationException("a second local training can only run after the first one");
        if (SecondTraining is null) throw new InvalidOperationException($"client {ClientId} cannot run a second local training here");
        if (Aggregation.TensorMaps.FindMismatch(Global, start) is { } mismatch)
            throw new ArgumentException($"start adapter: tensor '{mismatch.Key}' {mismatch.Problem}", nameof(start));
        return SecondTraining(start, extraLoss);
    }

    /// <summary>Tensor sets added to the update so far.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> Outgoing => outgoing;

    /// <summary>Metrics added to the update so far.</summary>
    public IReadOnlyDictionary<string, double> Metrics => metrics;

    /// <summary>Adds a differentiable term to every optimizer step's loss (its gradient enters each step once).</summary>
    public void AddLossTerm(Func<Tensor> term) => extraLosses.Add(term);

    /// <summary>Runs <paramref name="action"/> after every optimizer step with that step's learning rate.</summary>
    public void AfterOptimizerStep(Action<double> action) => afterSteps.Add(action);

    /// <summary>Runs <paramref name="action"/> in every step once the gradients are complete, before they are clipped
    /// and applied (e.g. zeroing the gradient of frozen components, so that the clip sees only what trains).</summary>
    public void BeforeGradientClip(Action action) => beforeClips.Add(action);

    /// <summary>Sends <paramref name="tensors"/> back under <paramref name="name"/>; the update takes them over.</summary>
    public void Send(string name, IReadOnlyDictionary<string, Tensor> tensors)
    {
        if (!outgoing.TryAdd(name, tensors))
            throw new InvalidOperationException($"two client hooks send a tensor set named '{name}'");
    }

    /// <summary>Adds a metric to the update (a later hook's value for the same name wins).</summary>
    public void Report(string name, double value) => metrics[name] = value;

    /// <summary>Frees <paramref name="tensors"/> when the round ends; returns them.</summary>
    public T Track<T>(T tensors) where T : IReadOnlyDictionary<string, Tensor>
    {
        foreach (var t in tensors.Values) t.DetachFromDisposeScope();
        tracked.Add(tensors);
        return tensors;
    }

    /// <summary>Installs the hooks' loss terms and after-step actions on the trainer, composed in hook order.</summary>
    internal void Install(IAdapterTrainer trainer)
    {
        trainer.ExtraLoss = extraLosses.Count switch
        {
            0 => null,
            1 => extraLosses[0],
            _ => () => extraLosses.Skip(1).Aggregate(extraLosses[0](), (sum, term) => sum + term()),
        };
        trainer.BeforeGradientClip = beforeClips.Count switch
        {
            0 => null,
            1 => beforeClips[0],
            _ => () => { foreach (var action in beforeClips) action(); },
        };
        trainer.AfterOptimizerStep = afterSteps.Count switch
        {
            0 => null,
            1 => afterSteps[0],
            _ => lr => { foreach (var action in afterSteps) action(lr); },
        };
    }

    /// <summary>Frees what the hooks tracked.</summary>
    public void Dispose()
    {
        foreach (var set in tracked) AdapterTensors.Dispose(set);
        tracked.Clear();
    }
}
