using static TorchSharp.torch;

namespace FedLlm.Federation;

/// <summary>
/// Base class for strategy decorators (differential privacy, update clipping, robust filtering, metrics): forwards every
/// call to an inner strategy, so a decorator overrides only what it changes and composes with all seven algorithms.
/// </summary>
/// <remarks>
/// Modelled on Microsoft.Extensions.AI's DelegatingChatClient and Flower's DifferentialPrivacyServerSideFixedClipping.
/// A decorator with state of its own should override <see cref="State"/> and <see cref="LoadState"/> and keep its keys
/// apart from the inner strategy's (a prefix such as "dp/"), so one checkpoint holds both. Disposing the decorator
/// disposes the inner strategy, because the decorator is what the round loop holds.
/// </remarks>
public abstract class DelegatingStrategy : IFederatedStrategy, IDisposable
{
    /// <summary>Wraps <paramref name="innerStrategy"/>.</summary>
    protected DelegatingStrategy(IFederatedStrategy innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(innerStrategy);
        InnerStrategy = innerStrategy;
    }

    /// <summary>The strategy every call is forwarded to.</summary>
    protected IFederatedStrategy InnerStrategy { get; }

    /// <inheritdoc/>
    public virtual string Name => InnerStrategy.Name;

    /// <inheritdoc/>
    public virtual IReadOnlyList<int> SampleClients(int round, FederationOptions options) => InnerStrategy.SampleClients(round, options);

    /// <inheritdoc/>
    public virtual ClientInstructions ConfigureTrain(int round, double learningRate) => InnerStrategy.ConfigureTrain(round, learningRate);

    /// <inheritdoc/>
    public virtual IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates) =>
        InnerStrategy.Aggregate(round, global, updates);

    /// <inheritdoc/>
    public virtual ClientInstructions? ConfigureEvaluate(int round) => InnerStrategy.ConfigureEvaluate(round);

    /// <inheritdoc/>
    public virtual IReadOnlyDictionary<string, double> AggregateEvaluate(int round, IReadOnlyList<ClientEvaluation> results) =>
        InnerStrategy.AggregateEvaluate(round, results);

    /// <inheritdoc/>
    public virtual RoundRecord Annotate(RoundRecord record) => InnerStrategy.Annotate(record);

    /// <inheritdoc/>
    public virtual IReadOnlyDictionary<string, Tensor> State => InnerStrategy.State;

    /// <inheritdoc/>
    public virtual void LoadState(IReadOnlyDictionary<string, Tensor> state) => InnerStrategy.LoadState(state);

    /// <summary>Disposes the inner strategy if it holds native state.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Override to free the decorator's own resources; call the base to dispose the inner strategy.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing && InnerStrategy is IDisposable disposable) disposable.Dispose();
    }
}
