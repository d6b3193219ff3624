using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using FedLlm.Federation.Simulation;
using FedLlm.Federation.Strategies;
using TorchSharp;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

/// <summary>
/// FedDyn (Acar, Zhao, Matas, Mattina, Whatmough, Saligrama, "Federated Learning Based on Dynamic Regularization",
/// ICLR 2021, Algorithm 1), written here, outside the library, as a user would add an algorithm with client-side state:
/// one strategy, one client hook, one registration. Nothing in FedLlm's core knows about it.
/// </summary>
/// <remarks>
/// Client k minimises L_k(θ) − ⟨g_k, θ⟩ + (α/2)‖θ − θ^{t−1}‖² and then sets g_k ← g_k − α(θ_k − θ^{t−1}) (g_k starts at 0).
/// Server: h ← h − α·(1/m)·Σ_{k∈P}(θ_k − θ^{t−1}) and θ^t = (1/|P|)·Σ_{k∈P} θ_k − h/α, with m all clients.
/// </remarks>
public sealed class FedDyn(StrategyOptions options, double alpha) : IFederatedStrategy
{
    public const string HookName = "feddyn";
    public const string AlphaKey = "feddyn_alpha";
    Dictionary<string, Tensor> h = new();

    public string Name => "feddyn";

    public ClientInstructions ConfigureTrain(int round, double learningRate) => new(round, learningRate)
    {
        Hooks = [HookName],
        Config = new Dictionary<string, string> { [AlphaKey] = ClientInstructions.FormatNumber(alpha) },
    };

    public IReadOnlyDictionary<string, Tensor> Aggregate(int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        using var noGrad = no_grad();
        var next = new Dictionary<string, Tensor>();
        var nextH = new Dictionary<string, Tensor>();
        foreach (var (key, x) in global)
        {
            var sum = updates.Select(u => u.Weights[key]).Aggregate((a, b) => a + b);
            var previous = h.TryGetValue(key, out var held) ? held : zeros_like(x);
            var hk = previous - alpha / options.TotalClients * (sum - updates.Count * x);
            nextH[key] = hk.DetachFromDisposeScope();
            next[key] = sum / updates.Count - hk / alpha;
        }
        foreach (var t in h.Values) t.Dispose();
        h = nextH;
        return next;
    }

    public IReadOnlyDictionary<string, Tensor> State => h.ToDictionary(kv => "h/" + kv.Key, kv => kv.Value.clone());

    public void LoadState(IReadOnlyDictionary<string, Tensor> state) =>
        h = state.ToDictionary(kv => kv.Key["h/".Length..], kv => kv.Value.clone().DetachFromDisposeScope());
}

/// <summary>FedDyn's client side: the linear and quadratic terms, and the g_k update in state section "feddyn".</summary>
public sealed class FedDynClientHooks : IClientHooks
{
    public string Name => FedDyn.HookName;

    public void BeforeTraining(ClientRoundContext context)
    {
        double alpha = context.Instructions.Number(FedDyn.AlphaKey);
        var g = context.State.Section("feddyn");
        var pairs = context.Trainable.Select(p => (p.Parameter, Global: context.Global[p.Key], G: g.GetValueOrDefault(p.Key))).ToList();
        context.AddLossTerm(() =>
        {
            Tensor total = zeros(Array.Empty<long>());
            foreach (var (w, x, gk) in pairs)
            {
                total = total + (alpha / 2) * (w - x.detach()).square().sum();
                if (gk is not null) total = total - (gk * w).sum();
            }
            return total;
        });
    }

    public void AfterTraining(ClientRoundContext context)
    {
        double alpha = context.Instructions.Number(FedDyn.AlphaKey);
        var g = context.State.Section("feddyn");
        using var noGrad = no_grad();
        var next = context.Global.ToDictionary(kv => kv.Key, kv =>
        {
            var step = alpha * (context.Local![kv.Key] - kv.Value);
            return g.TryGetValue(kv.Key, out var gk) ? gk - step : -step;
        });
        context.State.ReplaceSection("feddyn", next);
    }
}

public class AddedAlgorithmTests
{
    const double Alpha = 0.5;

    static AlgorithmRegistry WithFedDyn() =>
        StrategyFactory.BuiltIn.With("feddyn", o => new FedDyn(o, Alpha), new FedDynClientHooks());

    [Fact]
    public void FedDyn_server_step_matches_hand_arithmetic()
    {
        // m = 4 clients, two sampled; x = X0; y_a = X0 + 1, y_b = X0 + 3 (every coordinate).
        // h = −α/m·((y_a − x) + (y_b − x)) = −0.5/4·4 = −0.5; θ = mean(y) − h/α = X0 + 2 + 1 = X0 + 3.
        var strategy = new FedDyn(new StrategyOptions { TotalClients = 4 }, Alpha);
        var next = strategy.Aggregate(0, Adapter(X0), new[]
        {
            new ClientUpdate("a", Adapter(X0.Select(v => v + 1).ToArray()), 1),
            new ClientUpdate("b", Adapter(X0.Select(v => v + 3).ToArray()), 99), // FedDyn ignores example counts
        });
        AssertClose(X0.Select(v => v + 3).ToArray(), Flat(next), 1e-6, "θ");
        AssertClose(Enumerable.Repeat(-0.5, X0.Length).ToArray(), Flat(strategy.State.ToDictionary(kv => kv.Key["h/".Length..], kv => kv.Value)), 1e-6, "h");
    }

    [Fact]
    public async Task An_algorithm_with_client_state_is_added_by_registration_alone_and_its_client_and_server_state_agree()
    {
        // Every client trains every round, so h = (1/m)·Σ_k g_k holds after each round: the server's h and the clients'
        // g_k are computed on different sides of the contract from the same y_k, and only agree if the hook ran.
        var options = new FederationOptions
        {
            Rounds = 2, TotalClients = 3, ClientsPerRound = 3, LocalSteps = 2, BatchSize = 2, LearningRate = 1e-2, MinLearningRate = 1e-3,
            Seed = 5, EvaluateEvery = 0,
        };
        var registry = WithFedDyn();
        using var model = FederationCoreTests.AdaptedModel();
        var initial = AdapterTensors.Snapshot(model);
        using var clients = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0, registry);
        var strategy = registry.Create("feddyn", new StrategyOptions { TotalClients = options.TotalClients });
        using var server = new FederationServer(strategy, options, initial, clients);
        while (server.NextRound < options.Rounds) await server.RunRoundAsync();

        var clientState = clients.SnapshotState();
        var serverH = strategy.State;
        Assert.NotEmpty(serverH);
        foreach (var (key, h) in serverH)
        {
            string adapterKey = key["h/".Length..];
            var g = Enumerable.Range(0, options.TotalClients).Select(i => clientState[$"{InProcessClients.ClientId(i)}/feddyn/{adapterKey}"]).ToList();
            var mean = g.Aggregate((a, b) => a + b) / options.TotalClients;
            Assert.True(mean.allclose(h, rtol: 1e-4, atol: 1e-6), $"h ≠ mean g_k for {adapterKey}");
        }
        Assert.Contains(serverH.Values, t => t.abs().max().item<float>() > 0);

        // Without the client hook registered, a client refuses the round before training, naming the hook.
        using var plain = new InProcessClients(model, options, FederationCoreTests.Shards(options.TotalClients), padTokenId: 0);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => plain.TrainRoundAsync(0, [0], initial, strategy.ConfigureTrain(0, 1e-2)));
        Assert.Contains("client hook 'feddyn'", error.Message);
    }
}
