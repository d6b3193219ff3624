using FedLlm.Federation;
using FedLlm.Federation.Strategies;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation;

public class DelegatingStrategyTests
{
    /// <summary>A decorator that changes only what it must: it counts rounds and scales every update's example count.</summary>
    sealed class CountingStrategy(IFederatedStrategy inner) : DelegatingStrategy(inner)
    {
        public int Rounds { get; private set; }

        public override IReadOnlyDictionary<string, Tensor> Aggregate(
            int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
        {
            Rounds++;
            return base.Aggregate(round, global, updates);
        }
    }

    sealed class DisposableStrategy() : DelegatingStrategy(new FedAvg())
    {
        public bool Disposed { get; private set; }

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }

    [Fact]
    public void Forwards_every_member_to_the_inner_strategy()
    {
        var options = new StrategyOptions { TotalClients = 4, Tau = 0.09, ServerLearningRate = 0.5 };
        var inner = new FedAdam(options);
        using var wrapped = new CountingStrategy(inner);
        var bare = new FedAdam(options);

        Assert.Equal("fedadam", wrapped.Name);
        Assert.Equal((bare.ConfigureTrain(2, 0.1).Round, bare.ConfigureTrain(2, 0.1).LearningRate), (wrapped.ConfigureTrain(2, 0.1).Round, wrapped.ConfigureTrain(2, 0.1).LearningRate));
        var viaWrapper = Run(wrapped, rounds: 2);
        var direct = Run(bare, rounds: 2);

        Assert.Equal(2, wrapped.Rounds);
        Assert.Equal(direct[1], viaWrapper[1]);
        AssertBitEqual(bare.State, wrapped.State, "state seen through the wrapper");
        wrapped.LoadState(new Dictionary<string, Tensor>());
        Assert.Empty(inner.State);
    }

    [Fact]
    public void Disposing_the_decorator_disposes_the_inner_strategy()
    {
        var innermost = new FedAvgM(new StrategyOptions());
        Run(innermost, rounds: 1);
        var outer = new CountingStrategy(innermost);

        outer.Dispose();

        // FedAvgM's Dispose frees m, after which it is back to its initial (empty) state.
        Assert.Empty(innermost.State);
        var disposable = new DisposableStrategy();
        disposable.Dispose();
        Assert.True(disposable.Disposed);
        Assert.Throws<ArgumentNullException>(() => new CountingStrategy(null!));
    }
}
