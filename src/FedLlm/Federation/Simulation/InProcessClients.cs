using FedLlm.Data;
using FedLlm.Modeling;
using FedLlm.Training;
using static TorchSharp.torch;

namespace FedLlm.Federation.Simulation;

/// <summary>
/// All clients in this process, sharing one frozen base model: each client owns only its data and its small state
/// (SCAFFOLD's c_i, optionally optimizer moments), so memory is the base plus N adapters' worth of state.
/// Clients of a round train one after another on the shared model.
/// </summary>
public sealed class InProcessClients : IClientExecutor, IDisposable
{
    private readonly FederatedClient client;
    private readonly IReadOnlyList<IClientDataset> shards;
    private readonly FederatedClient.ClientState[] states;

    /// <summary>Clients holding instruction examples.</summary>
    public InProcessClients(LlamaForCausalLM model, FederationOptions options, IReadOnlyList<IReadOnlyList<SftExample>> shards, int padTokenId)
        : this(model, options, shards.Select(s => (IClientDataset)new SftClientDataset(s, padTokenId)).ToList(), padTokenId)
    {
    }

    /// <summary>Clients holding any local data set (instruction examples or preference pairs).</summary>
    public InProcessClients(LlamaForCausalLM model, FederationOptions options, IReadOnlyList<IClientDataset> shards, int padTokenId)
    {
        if (shards.Count != options.TotalClients)
            throw new ArgumentException($"{shards.Count} data shards for {options.TotalClients} clients", nameof(shards));
        for (int i = 0; i < shards.Count; i++)
            if (shards[i].Count == 0) throw new ArgumentException($"client {i} received no examples; use fewer clients or a larger α", nameof(shards));
        client = new FederatedClient(model, options, padTokenId);
        this.shards = shards;
        states = Enumerable.Range(0, shards.Count).Select(_ => new FederatedClient.ClientState()).ToArray();
    }

    public static string ClientId(int index) => $"client-{index}";

    public Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientRoundPlan plan, CancellationToken cancellationToken = default)
    {
        var updates = new List<ClientUpdate>(clients.Count);
        foreach (int index in clients)
        {
            cancellationToken.ThrowIfCancellationRequested();
            updates.Add(client.Train(ClientId(index), index, shards[index], global, plan, states[index], cancellationToken));
        }
        return Task.FromResult<IReadOnlyList<ClientUpdate>>(updates);
    }

    public IReadOnlyDictionary<string, Tensor> SnapshotState()
    {
        var state = new Dictionary<string, Tensor>();
        for (int i = 0; i < states.Length; i++)
        {
            foreach (var (key, tensor) in states[i].Control) state[$"{ClientId(i)}/control/{key}"] = tensor;
            foreach (var (key, tensor) in states[i].OptimizerMoments) state[$"{ClientId(i)}/adamw/{key}"] = tensor;
            if (states[i].OptimizerSteps > 0) state[$"{ClientId(i)}/adamw_steps"] = tensor(new[] { states[i].OptimizerSteps });
        }
        return state;
    }

    public void RestoreState(IReadOnlyDictionary<string, Tensor> state)
    {
        for (int i = 0; i < states.Length; i++)
        {
            string prefix = ClientId(i) + "/";
            var mine = state.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            states[i].Dispose();
            states[i] = new FederatedClient.ClientState
            {
                Control = Pick(mine, prefix + "control/"),
                OptimizerMoments = Pick(mine, prefix + "adamw/"),
                OptimizerSteps = mine.Where(kv => kv.Key == prefix + "adamw_steps").Select(kv => kv.Value.item<long>()).FirstOrDefault(),
            };
        }
    }

    static Dictionary<string, Tensor> Pick(IEnumerable<KeyValuePair<string, Tensor>> entries, string prefix) =>
        entries.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value.clone().DetachFromDisposeScope());

    public void Dispose()
    {
        foreach (var s in states) s.Dispose();
    }
}
