using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// The client side of a round, independent of transport and of the algorithm: receive the global adapter and the round's
/// instructions, run the client hooks they name (<see cref="IClientHooks"/>, looked up in the registry) around local
/// training on a fresh sample of the client's own data (instruction tuning or DPO: <see cref="IClientDataset"/>), and
/// return the update. What a client keeps between rounds lives in its <see cref="ClientState"/>.
/// </summary>
public sealed class FederatedClient
{
    /// <summary>The client state section of kept AdamW moments, and the counter of its steps.</summary>
    const string OptimizerSection = "adamw", OptimizerSteps = "adamw_steps";

    /// <summary>Mixed into the round's local seed for a hook's second training (<see cref="ClientRoundContext.TrainAnother"/>).</summary>
    const long SecondTrainingSeed = 0x5EC0_0D7A_1A5EL;

    readonly LlamaForCausalLM model;
    readonly ClientTrainingOptions options;
    readonly AlgorithmRegistry algorithms;
    readonly int padTokenId;

    /// <summary>A client training <paramref name="model"/>'s LoRA adapters under <paramref name="options"/>.</summary>
    /// <param name="algorithms">Where the hooks the instructions name are found (the built-in seven by default).</param>
    /// <param name="padTokenId">Pad id for instruction shards passed as example lists.</param>
    /// <param name="model">The model with LoRA injected, shared by the clients this object trains one after
    /// another.</param>
    /// <param name="options">Local training settings (validated here).</param>
    public FederatedClient(LlamaForCausalLM model, ClientTrainingOptions options, AlgorithmRegistry algorithms, int padTokenId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(algorithms);
        options.Validate();
        this.model = model;
        this.options = options;
        this.algorithms = algorithms;
        this.padTokenId = padTokenId;
    }

    /// <summary>Runs the client's part of <paramref name="instructions"/> on instruction examples; see the <see cref="IClientDataset"/> overload.</summary>
    public ClientUpdate Train(string clientId, int clientIndex, IReadOnlyList<SftExample> shard, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, ClientState state) =>
        Train(clientId, clientIndex, new SftClientDataset(shard, padTokenId), global, instructions, state);

    /// <summary>Runs the client's part of <paramref name="instructions"/>; the model's adapters hold y_i afterwards.</summary>
    /// <param name="clientIndex">Index among all clients (fixes its data sample and dropout seeds).</param>
    /// <param name="data">The client's whole local data set and its objective (SFT or DPO); its size is the update's example count.</param>
    /// <param name="state">The client's persistent state; hooks update it in place.</param>
    /// <param name="clientId">The client's id, carried in the update and in error messages.</param>
    /// <param name="global">The global adapter to start from (loaded into the model, not modified).</param>
    /// <param name="instructions">The round's learning rate, hooks and their settings.</param>
    /// <param name="cancellationToken">Stops training after the current step.</param>
    public ClientUpdate Train(string clientId, int clientIndex, IClientDataset data, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, ClientState state, CancellationToken cancellationToken = default)
    {
        if (data.Count == 0) throw new InvalidOperationException($"client {clientId} has no training examples");
        var hooks = instructions.Hooks.Select(algorithms.Hook).ToList(); // an unknown hook fails before any training
        AdapterTensors.Load(model, global);
        var training = new TrainingOptions
        {
            MaxSteps = options.LocalSteps,
            BatchSize = options.BatchSize,
            GradientAccumulationSteps = options.GradientAccumulationSteps,
            LearningRate = instructions.LearningRate,
            Schedule = LearningRateScheduleKind.Constant, // constant within a round; the cosine runs across rounds
            MaxGradNorm = options.MaxGradNorm,
            MaxSequenceLength = options.MaxSequenceLength,
            // The trainer's first epoch order is a fresh sample without replacement of batch × accumulation × steps
            // examples, different every round and client (OpenFedLLM draws the same positions for every client).
            Seed = RoundSchedule.LocalSeed(instructions.Round, clientIndex, options.Seed),
        };
        using var run = data.StartRun(model, training);
        var moments = state.Section(OptimizerSection);
        if (options.KeepClientOptimizerState && moments.Count > 0)
            run.Trainer.Optimizer.LoadState(state.Counter(OptimizerSteps) ?? 0, name => moments.GetValueOrDefault(name));

        var trainable = AdapterKeys.Parameters(model).Select(p => new TrainableTensor(p.Key, p.Parameter)).ToList();
        using var context = new ClientRoundContext(clientId, instructions, global, trainable, state, options.LocalSteps);
        foreach (var hook in hooks) hook.BeforeTraining(context);
        context.Install(run.Trainer);

        var metrics = run.Train(cancellationToken);
        var local = AdapterTensors.Snapshot(model);
        context.Local = local;
        context.SecondTraining = (start, extraLoss) =>
        {
            AdapterTensors.Load(model, start);
            // Its own sample: the same seed would replay the first training's batches exactly.
            using var second = data.StartRun(model, training with { Seed = training.Seed ^ SecondTrainingSeed });
            second.Trainer.ExtraLoss = extraLoss;
            second.Train(cancellationToken);
            var trained = AdapterTensors.Snapshot(model);
            AdapterTensors.Load(model, context.Local!);
            return trained;
        };
        try
        {
            foreach (var hook in hooks) hook.AfterTraining(context);
            foreach (var name in instructions.ReturnedTensorSets)
                if (!context.Outgoing.ContainsKey(name))
                    throw new InvalidOperationException($"round {RoundRecord.NumberOf(instructions.Round)}: the server asks for tensor set '{name}' back, and no client hook ({string.Join(", ", instructions.Hooks)}) produced it");
        }
        catch
        {
            AdapterTensors.Dispose(context.Local!); // y_i, or what a hook replaced it with (the context frees the rest)
            foreach (var set in context.Outgoing.Values) AdapterTensors.Dispose(set);
            throw;
        }
        if (options.KeepClientOptimizerState)
        {
            state.ReplaceSection(OptimizerSection, run.Trainer.Optimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone()));
            state.SetCounter(OptimizerSteps, run.Trainer.Optimizer.StepCount);
        }
        var allMetrics = new Dictionary<string, double>(metrics);
        foreach (var (name, value) in context.Metrics) allMetrics[name] = value;
        // A hook may have replaced y_i (clipping, noise); the context frees the replaced tensors, not these.
        return new ClientUpdate(clientId, context.Local!, data.Count, allMetrics) { TensorSets = context.Outgoing.ToDictionary() };
    }
}
