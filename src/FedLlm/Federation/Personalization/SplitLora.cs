using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Strategies;
using static TorchSharp.torch;

namespace FedLlm.Federation.Personalization;

/// <summary>Which LoRA factor a split adapter federates; the other stays on each client.</summary>
public enum SharedFactor
{
    /// <summary>A (the down-projection) is averaged, B stays personal: FedSA-LoRA.</summary>
    A,

    /// <summary>B (the up-projection) is averaged, A stays personal: the converse, FedRep-style split.</summary>
    B,
}

/// <summary>
/// Split LoRA adapters for unequal clients: one factor is federated by FedAvg, the other is kept and trained by each
/// client alone. <see cref="SharedFactor.A"/> is FedSA-LoRA (Guo, Wang, Pan, Chen, Li, "Selective Aggregation for
/// Low-Rank Adaptation in Federated Learning", ICLR 2025: the A matrices learn general knowledge and are shared, the B
/// matrices capture client-specific knowledge and stay local); <see cref="SharedFactor.B"/> is the converse, in the
/// manner of FedRep (Collins, Hassani, Mokhtari, Shakkottai, ICML 2021), which shares one part and personalises the
/// other.
/// </summary>
/// <remarks>
/// Server: the shared factor of the new global is the example-weighted mean of the clients' shared factors; the personal
/// factor of the global never changes (it stays the common initial value a new client starts from). Client
/// (<see cref="SplitLoraClientHooks"/>): after loading the global, puts its own personal factor back; after training,
/// keeps the personal factor in its state and sends the global's personal factor in its place, so the update reveals
/// only the shared half and the server's norms and checks see only what moved. Over the wire the update keeps the
/// global layout (validator, tensor codec); the personal half repeats the global's values, which the payload_bytes
/// metric leaves out.
/// </remarks>
public sealed class SplitLora(SharedFactor shared) : IFederatedStrategy
{
    /// <summary>The client hook's name.</summary>
    public const string HookName = "split-lora";

    /// <summary>The instructions' key of the shared factor ("A" or "B").</summary>
    public const string SharedKey = "split_lora_shared";

    /// <summary>The registry name of a split adapter sharing <paramref name="factor"/>.</summary>
    public static string AlgorithmName(SharedFactor factor) => factor == SharedFactor.A ? "lora-shared-a" : "lora-shared-b";

    /// <inheritdoc/>
    public string Name => AlgorithmName(shared);

    /// <inheritdoc/>
    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [HookName],
        Config = new Dictionary<string, string> { [SharedKey] = shared.ToString() },
    };

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        var mean = FedAvg.WeightedAverage(global, updates);
        foreach (var key in global.Keys.Where(k => !IsShared(k, shared)))
        {
            mean[key].Dispose();
            mean[key] = global[key].clone();
        }
        return mean;
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> State => new Dictionary<string, Tensor>();

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count > 0) throw new ArgumentException($"{Name} keeps no server state, but the checkpoint holds {state.Count} tensors", nameof(state));
    }

    /// <summary>Whether the adapter tensor <paramref name="key"/> belongs to the shared factor.</summary>
    public static bool IsShared(string key, SharedFactor shared) =>
        key.Contains(shared == SharedFactor.A ? ".lora_A." : ".lora_B.", StringComparison.Ordinal);

    /// <summary>Reads the shared factor from the instructions.</summary>
    public static SharedFactor SharedOf(ClientInstructions instructions) =>
        instructions.Config.GetValueOrDefault(SharedKey) switch
        {
            "A" => SharedFactor.A,
            "B" => SharedFactor.B,
            var other => throw new InvalidOperationException($"round {instructions.Round}: instruction '{SharedKey}' is '{other}', expected A or B"),
        };
}

/// <summary>The client side of <see cref="SplitLora"/>: the personal factor lives in state section "personal".</summary>
public sealed class SplitLoraClientHooks : IPersonalizedClientHooks
{
    /// <summary>The client state section of the personal factor.</summary>
    public const string Section = "personal";

    /// <inheritdoc/>
    public string Name => SplitLora.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
        var personal = context.State.Section(Section);
        if (personal.Count == 0) return; // first round of this client: start from the global's (common) personal factor
        var shared = SplitLora.SharedOf(context.Instructions);
        using var noGrad = no_grad();
        foreach (var p in context.Trainable.Where(p => !SplitLora.IsShared(p.Key, shared)))
        {
            var own = personal.GetValueOrDefault(p.Key)
                ?? throw new InvalidOperationException($"client {context.ClientId}: its personal factor has no '{p.Key}'; was its state written with another adapter layout?");
            p.Parameter.copy_(own);
        }
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        var shared = SplitLora.SharedOf(context.Instructions);
        var local = context.Local!;
        context.State.ReplaceSection(Section, local.Where(kv => !SplitLora.IsShared(kv.Key, shared)).ToDictionary(kv => kv.Key, kv => kv.Value.clone()));
        var sent = local.ToDictionary(kv => kv.Key, kv => SplitLora.IsShared(kv.Key, shared) ? kv.Value.clone() : context.Global[kv.Key].clone());
        context.ReplaceLocal(sent);
        context.Report(PayloadBytes.MetricName, sent.Where(kv => SplitLora.IsShared(kv.Key, shared)).Sum(kv => kv.Value.NumberOfElements * kv.Value.ElementSize));
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor>? PersonalAdapter(IReadOnlyDictionary<string, Tensor> global, ClientState state)
    {
        var personal = state.Section(Section);
        if (personal.Count == 0) return null;
        return global.ToDictionary(kv => kv.Key, kv => (personal.GetValueOrDefault(kv.Key) ?? kv.Value).clone().DetachFromDisposeScope());
    }
}
