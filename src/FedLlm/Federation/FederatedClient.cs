using FedLlm.Data;
using FedLlm.Federation.Strategies;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// The client side of a round, independent of transport: receive the global adapter and the round's plan, train the
/// local steps on a fresh sample of the client's own data (instruction tuning or DPO: <see cref="IClientDataset"/>), and
/// return the update. What a client keeps between rounds
/// (SCAFFOLD's c_i, optionally its optimizer moments) lives in <see cref="ClientState"/>.
/// </summary>
public sealed class FederatedClient(LlamaForCausalLM model, FederationOptions options, int padTokenId)
{
    /// <summary>What one client carries from round to round.</summary>
    public sealed class ClientState : IDisposable
    {
        /// <summary>SCAFFOLD's client control variate c_i (empty until the first SCAFFOLD round).</summary>
        public Dictionary<string, Tensor> Control { get; set; } = new();

        /// <summary>AdamW moments, kept only with <see cref="FederationOptions.KeepClientOptimizerState"/>.</summary>
        public Dictionary<string, Tensor> OptimizerMoments { get; set; } = new();
        public long OptimizerSteps { get; set; }

        public void Dispose()
        {
            AdapterTensors.Dispose(Control);
            AdapterTensors.Dispose(OptimizerMoments);
        }
    }

    /// <summary>Runs the client's part of <paramref name="plan"/> on instruction examples; see the <see cref="IClientDataset"/> overload.</summary>
    public ClientUpdate Train(string clientId, int clientIndex, IReadOnlyList<SftExample> shard, IReadOnlyDictionary<string, Tensor> global,
        ClientRoundPlan plan, ClientState state) =>
        Train(clientId, clientIndex, new SftClientDataset(shard, padTokenId), global, plan, state);

    /// <summary>Runs the client's part of <paramref name="plan"/>; the model's adapters hold y_i afterwards.</summary>
    /// <param name="clientIndex">Index among all clients (fixes its data sample and dropout seeds).</param>
    /// <param name="data">The client's whole local data set and its objective (SFT or DPO); its size is the update's example count.</param>
    public ClientUpdate Train(string clientId, int clientIndex, IClientDataset data, IReadOnlyDictionary<string, Tensor> global,
        ClientRoundPlan plan, ClientState state, CancellationToken cancellationToken = default)
    {
        if (data.Count == 0) throw new InvalidOperationException($"client {clientId} has no training examples");
        AdapterTensors.Load(model, global);
        var training = new TrainingOptions
        {
            MaxSteps = options.LocalSteps,
            BatchSize = options.BatchSize,
            GradientAccumulationSteps = options.GradientAccumulationSteps,
            LearningRate = plan.LearningRate,
            Schedule = LearningRateScheduleKind.Constant, // constant within a round; the cosine runs across rounds
            MaxGradNorm = options.MaxGradNorm,
            MaxSequenceLength = options.MaxSequenceLength,
            // The trainer's first epoch order is a fresh sample without replacement of batch × accumulation × steps
            // examples, different every round and client (OpenFedLLM draws the same positions for every client).
            Seed = RoundSchedule.LocalSeed(plan.Round, clientIndex, options),
        };
        using var run = data.StartRun(model, training);
        if (options.KeepClientOptimizerState && state.OptimizerMoments.Count > 0)
            run.Trainer.Optimizer.LoadState(state.OptimizerSteps, name => state.OptimizerMoments.GetValueOrDefault(name));

        var trainable = AdapterKeys.Parameters(model);
        if (plan.ProximalMu > 0)
            run.Trainer.ExtraLoss = () => FedProx.ProximalTerm(trainable.Select(p => ((Tensor)p.Item2, global[p.Item1])), plan.ProximalMu);

        Dictionary<string, Tensor>? correction = null;
        if (plan.ServerControl is { } serverControl)
        {
            // SCAFFOLD as OpenFedLLM applies it: after each optimizer step, w ← w − lr·(c − c_i).
            correction = Scaffold.Correction(serverControl, state.Control);
            foreach (var t in correction.Values) t.DetachFromDisposeScope();
            run.Trainer.AfterOptimizerStep = lr =>
            {
                using var noGrad = no_grad();
                foreach (var (key, parameter) in trainable)
                    if (correction.TryGetValue(key, out var c)) parameter.add_(c, -lr);
            };
        }

        try
        {
            var metrics = run.Train(cancellationToken);
            var local = AdapterTensors.Snapshot(model);
            Dictionary<string, Tensor>? controlDelta = null;
            if (plan.ServerControl is { } c)
            {
                var (newControl, delta) = Scaffold.ClientControlUpdate(global, local, c, state.Control, options.LocalSteps, plan.LearningRate);
                foreach (var t in newControl.Values.Concat(delta.Values)) t.DetachFromDisposeScope();
                AdapterTensors.Dispose(state.Control);
                state.Control = newControl;
                controlDelta = delta;
            }
            if (options.KeepClientOptimizerState)
            {
                AdapterTensors.Dispose(state.OptimizerMoments);
                state.OptimizerMoments = run.Trainer.Optimizer.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
                state.OptimizerSteps = run.Trainer.Optimizer.StepCount;
            }
            return new ClientUpdate(clientId, local, data.Count, controlDelta, metrics);
        }
        finally
        {
            AdapterTensors.Dispose(correction);
        }
    }
}
