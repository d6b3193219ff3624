using FedLlm.Runtime;
using System.Security.Cryptography;
using TorchSharp;

namespace FedLlm.Privacy;

/// <summary>How the generators of differential-privacy noise are seeded.</summary>
public enum NoiseSeeding
{
    /// <summary>From the run seed, the round and a stream name: a simulation reruns bit for bit. Offers no privacy
    /// against anyone who knows the seed, so only for simulations and tests.</summary>
    RunSeed,

    /// <summary>A fresh 64-bit seed from the operating system's cryptographic generator
    /// (<see cref="RandomNumberGenerator"/>) for every generator: what a real deployment needs.</summary>
    Cryptographic,
}

/// <summary>
/// Creates the <see cref="torch.Generator"/> for one round's noise of one kind ("update", "clipped-count"). Each call
/// gets a new generator, so what is drawn in a round depends only on (seed, round, stream) and never on how many draws
/// earlier rounds made, or whether the run was resumed in between.
/// </summary>
/// <remarks>
/// The noise itself is drawn by libtorch's generator (mt19937/Philox) from that seed, as Flower (numpy) and Opacus
/// (torch, optionally a secure generator) draw theirs; with <see cref="NoiseSeeding.Cryptographic"/> the seed is secret
/// but the sampler is not a cryptographic one, and floating-point Gaussian sampling has known side channels
/// (Mironov 2012, "On Significance of the Least Significant Bits for Differential Privacy").
/// </remarks>
public sealed class NoiseSource
{
    readonly ulong runSeed;

    NoiseSource(NoiseSeeding seeding, ulong runSeed)
    {
        Seeding = seeding;
        this.runSeed = runSeed;
    }

    /// <summary>Reproducible noise from <paramref name="runSeed"/> (simulation).</summary>
    public static NoiseSource FromRunSeed(long runSeed) => new(NoiseSeeding.RunSeed, unchecked((ulong)runSeed));

    /// <summary>Noise seeded from the operating system's cryptographic generator (deployment).</summary>
    public static NoiseSource Cryptographic() => new(NoiseSeeding.Cryptographic, 0);

    /// <summary><see cref="FromRunSeed"/> or <see cref="Cryptographic"/> as <paramref name="seeding"/> says.</summary>
    public static NoiseSource Create(NoiseSeeding seeding, long runSeed) => seeding switch
    {
        NoiseSeeding.RunSeed => FromRunSeed(runSeed),
        NoiseSeeding.Cryptographic => Cryptographic(),
        _ => throw new ArgumentOutOfRangeException(nameof(seeding), seeding, null),
    };

    /// <summary>Which seeding this source uses.</summary>
    public NoiseSeeding Seeding { get; }

    /// <summary>A new generator for <paramref name="stream"/> in <paramref name="round"/>; the caller disposes it.</summary>
    public torch.Generator CreateGenerator(int round, string stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (Seeding == NoiseSeeding.Cryptographic)
            return new torch.Generator(BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)));
        ulong seed = Mix(Mix(runSeed ^ 0x6470_6e6f_6973_6500UL) ^ (ulong)(uint)round);
        return new torch.Generator(Mix(seed ^ Fnv1a(stream)));
    }

    /// <summary>SplitMix64's finaliser (Steele, Lea, Flood 2014): neighbouring inputs give unrelated seeds.</summary>
    static ulong Mix(ulong z)
    {
        z += 0x9E37_79B9_7F4A_7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>FNV-1a of the stream name: fixed across processes, unlike string.GetHashCode.</summary>
    static ulong Fnv1a(string text)
    {
        ulong hash = 0xcbf2_9ce4_8422_2325UL;
        foreach (char c in text) hash = (hash ^ c) * 0x0000_0100_0000_01B3UL;
        return hash;
    }
}
