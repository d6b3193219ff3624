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
    private readonly LlamaForCausalLM model;
    private readonly int batchSize;
    private readonly IReadOnlyList<IClientDataset> shards;
    private readonly ClientState[] states;

    /// <summary>Clients holding instruction examples.</summary>
    public InProcessClients(LlamaForCausalLM model, FederationOptions options, IReadOnlyList<IReadOnlyList<SftExample>> shards, int padTokenId,
        AlgorithmRegistry? algorithms = null)
        : this(model, options, shards.Select(s => (IClientDataset)new SftClientDataset(s, padTokenId)).ToList(), padTokenId, algorithms)
    {
    }

    /// <summary>Clients holding any local data set (instruction examples or preference pairs).</summary>
    public InProcessClients(LlamaForCausalLM model, FederationOptions options, IReadOnlyList<IClientDataset> shards, int padTokenId,
        AlgorithmRegistry? algorithms = null)
    {
        if (shards.Count != options.TotalClients)
            throw new ArgumentException($"{shards.Count} data shards for {options.TotalClients} clients", nameof(shards));
        for (int i = 0; i < shards.Count; i++)
            if (shards[i].Count == 0) throw new ArgumentException($"client {i} received no examples; use fewer clients or a larger α", nameof(shards));
        this.model = model;
        batchSize = options.BatchSize;
        client = new FederatedClient(model, options.ClientTraining, algorithms ?? Strategies.StrategyFactory.BuiltIn, padTokenId);
        this.shards = shards;
        states = Enumerable.Range(0, shards.Count).Select(_ => new ClientState()).ToArray();
    }

    /// <summary>The id of the client at <paramref name="index"/>: "client-{index}".</summary>
    public static string ClientId(int index) => $"client-{index}";

    /// <inheritdoc/>
    public Task<IReadOnlyList<ClientUpdate>> TrainRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        var updates = new List<ClientUpdate>(clients.Count);
        foreach (int index in clients)
        {
            cancellationToken.ThrowIfCancellationRequested();
            updates.Add(client.Train(ClientId(index), index, shards[index], global, instructions, states[index], cancellationToken));
        }
        return Task.FromResult<IReadOnlyList<ClientUpdate>>(updates);
    }

    /// <summary>Each client scores <paramref name="global"/> on its own data (<see cref="IClientDataset.Evaluate"/>).</summary>
    public Task<IReadOnlyList<ClientEvaluation>> EvaluateRoundAsync(int round, IReadOnlyList<int> clients, IReadOnlyDictionary<string, Tensor> global,
        ClientInstructions instructions, CancellationToken cancellationToken = default)
    {
        AdapterTensors.Load(model, global);
        var results = new List<ClientEvaluation>(clients.Count);
        foreach (int index in clients)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (shards[index].Evaluate(model, batchSize) is { } metrics) results.Add(new ClientEvaluation(ClientId(index), shards[index].Count, metrics));
        }
        return Task.FromResult<IReadOnlyList<ClientEvaluation>>(results);
    }

    /// <summary>Every client's state under "client-{i}/" (the keys a client's own store uses, prefixed).</summary>
    public IReadOnlyDictionary<string, Tensor> SnapshotState()
    {
        var state = new Dictionary<string, Tensor>();
        for (int i = 0; i < states.Length; i++)
            foreach (var (key, tensor) in states[i].Tensors) state[$"{ClientId(i)}/{key}"] = tensor;
        return state;
    }

    /// <inheritdoc/>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> state)
    {
        for (int i = 0; i < states.Length; i++)
        {
            string prefix = ClientId(i) + "/";
            states[i].Dispose();
            states[i] = ClientState.FromTensors(state.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                .Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], kv.Value.clone())));
        }
    }

    /// <summary>Frees every client's state.</summary>
    public void Dispose()
    {
        foreach (var s in states) s.Dispose();
    }
}
