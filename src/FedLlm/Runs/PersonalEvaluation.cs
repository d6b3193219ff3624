using FedLlm.Federation;
using FedLlm.Federation.Personalization;
using FedLlm.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Runs;

/// <summary>One client's scores on its own held-out split: the global adapter, and the personal ones the run has.</summary>
/// <param name="Personal">The algorithm's personal adapter (a split adapter's, Ditto's v), or null when it has none.</param>
/// <param name="Finetuned">The global adapter after K local steps, or null without fine-tuning.</param>
/// <param name="LocalOnly">The client trained alone, or null when not asked for.</param>
/// <param name="Client">The client's index.</param>
/// <param name="HeldOutExamples">Size of the client's own held-out split, the weight of its scores in the
/// means.</param>
/// <param name="Global">The final global adapter's score.</param>
public sealed record ClientScores(int Client, int HeldOutExamples, EvaluationResult Global, EvaluationResult? Personal, EvaluationResult? Finetuned,
    EvaluationResult? LocalOnly);

/// <summary>Per-client scores of one run and their means weighted by each client's held-out size.</summary>
public sealed record PersonalScores(IReadOnlyList<ClientScores> Clients)
{
    /// <summary>The held-out-size-weighted mean of one kind of score over the clients that have it, or null.</summary>
    public EvaluationResult? Mean(Func<ClientScores, EvaluationResult?> pick)
    {
        var scored = Clients.Select(c => (c.HeldOutExamples, Result: pick(c))).Where(c => c.Result is not null).ToList();
        double total = scored.Sum(c => (double)c.HeldOutExamples);
        if (scored.Count == 0 || total == 0) return null;
        return new EvaluationResult(scored.Sum(c => c.HeldOutExamples * c.Result!.Loss) / total, scored.Sum(c => c.HeldOutExamples * c.Result!.Score) / total);
    }
}

/// <summary>
/// Scores every client's adapters on its own held-out split after a simulated federation: the final global adapter,
/// the algorithm's personal adapter from the client's state (<see cref="IPersonalizedClientHooks"/>), the global adapter
/// fine-tuned for K local steps, and a local-only adapter.
/// </summary>
internal sealed class PersonalEvaluation(LlamaForCausalLM model, RunOptions options, RunData data, IReadOnlyDictionary<string, Tensor> initial)
{
    readonly Dictionary<int, EvaluationResult> localOnly = new();

    /// <summary>The scores of each client with held-out examples.</summary>
    /// <param name="personal">The algorithm's client hook that keeps a personal adapter, or null.</param>
    /// <param name="clientState">Every client's state as <see cref="IClientExecutor.SnapshotState"/> gives it ("client-{i}/…").</param>
    /// <param name="global">The final global adapter (read, not modified).</param>
    public PersonalScores Evaluate(IReadOnlyDictionary<string, Tensor> global, IPersonalizedClientHooks? personal, IReadOnlyDictionary<string, Tensor> clientState)
    {
        var evaluate = data.EvaluateExamples ?? throw new InvalidOperationException("the run holds no per-client held-out split");
        var settings = options.Personalization ?? new PersonalizationOptions();
        var federation = options.Federation;
        var rows = new List<ClientScores>();
        for (int c = 0; c < data.ClientHeldOut.Count; c++)
        {
            var heldOut = data.ClientHeldOut[c];
            if (heldOut.Count == 0) continue;
            EvaluationResult Score(IReadOnlyDictionary<string, Tensor> adapter)
            {
                AdapterTensors.Load(model, adapter);
                return evaluate(heldOut);
            }
            var globalScore = Score(global);
            EvaluationResult? personalScore = null;
            if (personal is not null)
            {
                string prefix = Federation.Simulation.InProcessClients.ClientId(c) + "/";
                using var state = ClientState.FromTensors(clientState.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                    .Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], kv.Value.clone())));
                var adapter = personal.PersonalAdapter(global, state);
                personalScore = adapter is null ? globalScore : Score(adapter); // a client never sampled holds only the global
                AdapterTensors.Dispose(adapter);
            }
            EvaluationResult? finetuned = null;
            if (settings.FinetuneSteps > 0)
            {
                // The last round's learning rate, constant, as one more round of local training would use.
                var adapter = Train(global, c, settings.FinetuneSteps, RoundSchedule.LearningRate(federation.Rounds - 1, federation), 0x5F17E);
                finetuned = Score(adapter);
                AdapterTensors.Dispose(adapter);
            }
            EvaluationResult? alone = null;
            if (settings.LocalOnly)
            {
                if (!localOnly.TryGetValue(c, out var cached))
                {
                    var adapter = Train(initial, c, federation.Rounds * federation.LocalSteps, federation.LearningRate, 0x10CA1, cosine: true);
                    localOnly[c] = cached = Score(adapter);
                    AdapterTensors.Dispose(adapter);
                }
                alone = cached;
            }
            rows.Add(new ClientScores(c, heldOut.Count, globalScore, personalScore, finetuned, alone));
        }
        return new PersonalScores(rows);
    }

    Dictionary<string, Tensor> Train(IReadOnlyDictionary<string, Tensor> start, int client, int steps, double learningRate, long salt, bool cosine = false)
    {
        var federation = options.Federation;
        AdapterTensors.Load(model, start);
        var training = new TrainingOptions
        {
            MaxSteps = steps, BatchSize = federation.BatchSize, GradientAccumulationSteps = federation.GradientAccumulationSteps,
            LearningRate = learningRate, MinLearningRate = cosine ? federation.MinLearningRate : 0,
            Schedule = cosine ? LearningRateScheduleKind.Cosine : LearningRateScheduleKind.Constant,
            MaxGradNorm = federation.MaxGradNorm, MaxSequenceLength = federation.MaxSequenceLength, Seed = federation.Seed * 7919 + salt + client,
        };
        using var run = data.Shards[client].StartRun(model, training);
        run.Train();
        return AdapterTensors.Snapshot(model);
    }
}
