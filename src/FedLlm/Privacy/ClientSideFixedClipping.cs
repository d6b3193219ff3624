using FedLlm.Federation;
using FedLlm.Federation.Aggregation;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>
/// Central DP with clipping on the clients: each client clips its own update Δ_i = y_i − x to norm C before it leaves
/// (<see cref="ClientClippingHooks"/>), and the server averages over the fixed denominator m and adds N(0, (σC/m)²).
/// </summary>
/// <remarks>
/// <para>Flower's DifferentialPrivacyClientSideFixedClipping with its FixedClippingMod on the client. The point of
/// clipping on the client is that the server never needs the unclipped update: combined with secure aggregation
/// (Federation.SecureAggregation) the server sees only the sum of the clipped updates and adds the noise to it. Without
/// it, the server still sees each clipped update.</para>
/// <para>The server clips again with the same C (<see cref="DpMean"/>): a no-op for clients that followed the
/// instructions, and it keeps the sensitivity at C when one did not. Accounting as DP-FedAvg: q = m / N, σ.</para>
/// </remarks>
public sealed class ClientSideFixedClipping : DelegatingStrategy
{
    /// <summary>The client hook that clips.</summary>
    public const string HookName = "dp-client-clipping";

    /// <summary>The instructions' key of C.</summary>
    public const string ClippingNormKey = "dp_clipping_norm";

    readonly NoiseSource noise;

    /// <summary>Wraps <paramref name="innerStrategy"/>; <paramref name="options"/> as for server-side clipping.</summary>
    public ClientSideFixedClipping(IFederatedStrategy innerStrategy, FixedClippingOptions options, NoiseSource noise)
        : base(innerStrategy)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(noise);
        options.Validate();
        Options = options;
        this.noise = noise;
    }

    /// <summary>The settings.</summary>
    public FixedClippingOptions Options { get; }

    /// <summary>The inner strategy's instructions plus the clipping hook and C.</summary>
    public override ClientInstructions ConfigureTrain(int round, double learningRate) =>
        ClientHookInstructions.Append(InnerStrategy.ConfigureTrain(round, learningRate), HookName,
            new Dictionary<string, string> { [ClippingNormKey] = ClientInstructions.FormatNumber(Options.ClippingNorm) });

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Tensor> Aggregate(
        int round, IReadOnlyDictionary<string, Tensor> global, IReadOnlyList<ClientUpdate> updates)
    {
        UpdateChecks.Validate(global, updates);
        using var generator = noise.CreateGenerator(round, ServerSideFixedClipping.UpdateNoiseStream);
        using var scope = NewDisposeScope();
        // With secure aggregation the server holds only the survivors' mean of the clipped updates, which it cannot clip
        // again; the noise goes on their sum.
        var mean = SecureAggregate.Is(updates)
            ? DpMean.FromSecureAggregate(global, updates[0], Options.ClippingNorm, Options.NoiseMultiplier, Options.ClientsPerRound, generator)
            : DpMean.Compute(global, updates, Options.ClippingNorm, Options.NoiseMultiplier, Options.ClientsPerRound ?? updates.Count, generator);
        var combined = PreAggregatedUpdate.Create(global, mean.Delta, PreAggregatedUpdate.TotalExamples(updates));
        var next = InnerStrategy.Aggregate(round, global, new[] { combined });
        foreach (var t in next.Values) t.MoveToOuterDisposeScope();
        return next;
    }
}

/// <summary>The client side of <see cref="ClientSideFixedClipping"/> (and the clipping step of local DP): replaces y_i by
/// x + clip_C(y_i − x) and reports the norm before clipping as "dp_update_norm".</summary>
public sealed class ClientClippingHooks : IClientHooks
{
    /// <inheritdoc/>
    public string Name => ClientSideFixedClipping.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        using var scope = NewDisposeScope();
        var clipped = ClippedDelta(context, context.Instructions.Number(ClientSideFixedClipping.ClippingNormKey));
        Send(context, clipped);
    }

    /// <summary>clip_C(y_i − x) of the context's current update; reports the norm before clipping as "dp_update_norm".
    /// The tensors are in the caller's dispose scope.</summary>
    internal static Dictionary<string, Tensor> ClippedDelta(ClientRoundContext context, double clippingNorm)
    {
        var delta = TensorMaps.Difference(context.Local!, context.Global);
        var clipped = UpdateClipping.ClipToNorm(delta, clippingNorm);
        context.Report("dp_update_norm", clipped.Norm);
        return clipped.Tensors;
    }

    /// <summary>Makes the update x + <paramref name="delta"/> (in the global's dtypes).</summary>
    internal static void Send(ClientRoundContext context, IReadOnlyDictionary<string, Tensor> delta)
    {
        var sent = PreAggregatedUpdate.Create(context.Global, delta, 1).Weights;
        foreach (var t in sent.Values) t.MoveToOuterDisposeScope();
        context.ReplaceLocal(sent);
    }
}
