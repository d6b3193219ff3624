using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using TorchSharp;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Strategies;

public class FedProxTests
{
    [Fact]
    public void Plans_the_proximal_mu_default_and_configured()
    {
        Assert.Equal(0.01, new FedProx(new StrategyOptions()).ConfigureTrain(0, 1e-4).Number("proximal_mu"));
        var plan = new FedProx(new StrategyOptions { ProximalMu = 0.25 }).ConfigureTrain(3, 1e-4);
        Assert.Equal((3, 1e-4, 0.25), (plan.Round, plan.LearningRate, plan.Number("proximal_mu")));
        Assert.Equal(new[] { "fedprox" }, plan.Hooks);
        Assert.Empty(plan.TensorSets);
    }

    [Fact]
    public void Server_rounds_are_fedavg_computed_by_hand()
    {
        var globals = Run(new FedProx(new StrategyOptions()), rounds: 2);

        // Same arithmetic as FedAvgTests: round 1 p = .1/.3/.6, round 2 p = 1/3, 2/3.
        AssertClose(new[] { 1.56, -0.88, 0.65, 0.1, 3.2 }, globals[0], 1e-6, "round 1");
        AssertClose(new[] { 2.0, 1.0, 1.0, 2.0, 1.0 }, globals[1], 1e-6, "round 2");
    }

    [Fact]
    public void Proximal_term_and_its_gradient_match_hand_arithmetic()
    {
        // Prepare: w1 = [1, 2] vs g1 = [0, 1.5]; w2 = [[3], [−1]] vs g2 = [[1], [−1]]; μ = 0.1.
        var w1 = new TorchSharp.Modules.Parameter(tensor(new[] { 1.0f, 2.0f }), requires_grad: true);
        var w2 = new TorchSharp.Modules.Parameter(tensor(new[] { 3.0f, -1.0f }, new long[] { 2, 1 }), requires_grad: true);
        var g1 = tensor(new[] { 0.0f, 1.5f });
        // A live parameter as the global must be treated as a constant, not trained.
        var g2 = new TorchSharp.Modules.Parameter(tensor(new[] { 1.0f, -1.0f }, new long[] { 2, 1 }), requires_grad: true);

        // Execute
        var term = FedProx.ProximalTerm(new (Tensor, Tensor)[] { (w1, g1), (w2, g2) }, mu: 0.1);
        term.backward();

        // Assert: ‖w1 − g1‖² = 1² + 0.5² = 1.25; ‖w2 − g2‖² = 2² + 0² = 4; (0.1/2)·5.25 = 0.2625.
        Assert.Equal(0.2625, term.item<float>(), 6);
        // ∂/∂w = μ·(w − g): [0.1, 0.05] and [[0.2], [0]].
        AssertClose(new[] { 0.1, 0.05 }, Values(w1.grad!), 1e-7, "grad w1");
        AssertClose(new[] { 0.2, 0.0 }, Values(w2.grad!), 1e-7, "grad w2");
        Assert.Null(g2.grad);
    }

    [Fact]
    public void Proximal_term_is_zero_for_mu_zero_or_no_pairs_and_rejects_shape_mismatch()
    {
        var w = tensor(new[] { 1.0f, 2.0f });
        var g = tensor(new[] { 0.0f, 0.0f });
        Assert.Equal(0.0f, FedProx.ProximalTerm(new[] { (w, g) }, 0).item<float>());
        Assert.Equal(0.0f, FedProx.ProximalTerm(Array.Empty<(Tensor, Tensor)>(), 0.5).item<float>());
        Assert.Throws<ArgumentException>(() => FedProx.ProximalTerm(new[] { (w, tensor(new[] { 0.0f, 0.0f, 0.0f })) }, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => FedProx.ProximalTerm(new[] { (w, g) }, -1));
    }
}
