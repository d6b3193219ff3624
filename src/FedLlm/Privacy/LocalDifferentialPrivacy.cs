using FedLlm.Federation;
using static TorchSharp.torch;

namespace FedLlm.Privacy;

/// <summary>
/// Local DP: every client clips its update Δ_i = y_i − x to norm C and adds N(0, (σC)²) to each coordinate before the
/// update leaves it (<see cref="LocalDpClientHooks"/>); the server aggregates the noisy updates with the inner strategy
/// as they are.
/// </summary>
/// <remarks>
/// <para>As Flower's LocalDpMod (clip, then Gaussian noise on the client), with the noise given by a multiplier σ of C
/// so that one round of one client is the Gaussian mechanism with noise multiplier σ, accounted by
/// <see cref="PrivacyPlan"/> without amplification by sampling. The noise of m clients averages down only by √m, which
/// is why local DP needs far more noise per client than central DP for the same ε.</para>
/// <para>Seeding: from the run seed, the round and the client id when the instructions say so (simulation: reproducible,
/// and no privacy against whoever knows the seed); otherwise each client draws a seed from its operating system's
/// cryptographic generator, which the server never learns.</para>
/// </remarks>
public sealed class LocalDifferentialPrivacy : DelegatingStrategy
{
    /// <summary>The client hook that clips and adds noise.</summary>
    public const string HookName = "dp-local";

    /// <summary>The instructions' key of the noise standard deviation σC.</summary>
    public const string NoiseStddevKey = "dp_noise_stddev";

    /// <summary>The instructions' key of the run seed the noise is drawn from; absent = cryptographic seeding on the client.</summary>
    public const string NoiseSeedKey = "dp_noise_seed";

    readonly double clippingNorm, noiseMultiplier;
    readonly long? runSeed;

    /// <summary>Wraps <paramref name="innerStrategy"/>; <paramref name="runSeed"/> null = clients seed their noise
    /// cryptographically.</summary>
    public LocalDifferentialPrivacy(IFederatedStrategy innerStrategy, double clippingNorm, double noiseMultiplier, long? runSeed)
        : base(innerStrategy)
    {
        if (!(clippingNorm > 0) || double.IsInfinity(clippingNorm)) throw new ArgumentOutOfRangeException(nameof(clippingNorm), clippingNorm, "must be positive and finite");
        if (!(noiseMultiplier >= 0) || double.IsInfinity(noiseMultiplier)) throw new ArgumentOutOfRangeException(nameof(noiseMultiplier), noiseMultiplier, "must be finite and ≥ 0");
        this.clippingNorm = clippingNorm;
        this.noiseMultiplier = noiseMultiplier;
        this.runSeed = runSeed;
    }

    /// <summary>The inner strategy's instructions plus the local-DP hook, C, σC and (run-seed mode) the seed.</summary>
    public override ClientInstructions ConfigureTrain(int round, double learningRate)
    {
        var config = new Dictionary<string, string>
        {
            [ClientSideFixedClipping.ClippingNormKey] = ClientInstructions.FormatNumber(clippingNorm),
            [NoiseStddevKey] = ClientInstructions.FormatNumber(noiseMultiplier * clippingNorm),
        };
        if (runSeed is { } seed) config[NoiseSeedKey] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return ClientHookInstructions.Append(InnerStrategy.ConfigureTrain(round, learningRate), HookName, config);
    }
}

/// <summary>The client side of <see cref="LocalDifferentialPrivacy"/>: y_i ← x + clip_C(y_i − x) + N(0, (σC)²·I).</summary>
public sealed class LocalDpClientHooks : IClientHooks
{
    /// <inheritdoc/>
    public string Name => LocalDifferentialPrivacy.HookName;

    /// <inheritdoc/>
    public void BeforeTraining(ClientRoundContext context)
    {
    }

    /// <inheritdoc/>
    public void AfterTraining(ClientRoundContext context)
    {
        var instructions = context.Instructions;
        double c = instructions.Number(ClientSideFixedClipping.ClippingNormKey);
        double std = instructions.Number(LocalDifferentialPrivacy.NoiseStddevKey);
        var source = instructions.Config.TryGetValue(LocalDifferentialPrivacy.NoiseSeedKey, out var seedText)
            ? NoiseSource.FromRunSeed(long.Parse(seedText, System.Globalization.CultureInfo.InvariantCulture))
            : NoiseSource.Cryptographic();
        using var scope = NewDisposeScope();
        var clipped = ClientClippingHooks.ClippedDelta(context, c);
        using var generator = source.CreateGenerator(instructions.Round, StreamName(context.ClientId));
        var noisy = GaussianNoise.Add(clipped, std, generator);
        ClientClippingHooks.Send(context, noisy);
    }

    /// <summary>The noise stream of one client: distinct per client so that no two clients draw the same noise.</summary>
    public static string StreamName(string clientId) => "dp/local/" + clientId;
}
