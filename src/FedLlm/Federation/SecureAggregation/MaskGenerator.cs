using System.Buffers.Binary;
using System.Security.Cryptography;

namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// The protocol's pseudo-random generator: a 32-byte seed expanded to uniform elements of Z_{2^32} by AES-256 in counter
/// mode (block i = AES_seed(i as a 128-bit little-endian counter); each block gives four elements).
/// </summary>
/// <remarks>Bonawitz et al. 2017 §4 need a PRG whose output is indistinguishable from uniform to whoever lacks the seed;
/// AES-CTR is the standard instantiation (NIST SP 800-90A's CTR_DRBG core without reseeding), and it runs on the AES
/// instructions of the processor through the platform's AES.</remarks>
public static class MaskGenerator
{
    /// <summary>Seed length in bytes (an AES-256 key).</summary>
    public const int SeedBytes = 32;

    /// <summary>The first <paramref name="length"/> ring elements of the stream of <paramref name="seed"/>.</summary>
    public static uint[] Expand(ReadOnlySpan<byte> seed, int length)
    {
        var mask = new uint[length];
        Fill(seed, mask);
        return mask;
    }

    /// <summary>Fills <paramref name="destination"/> with the stream of <paramref name="seed"/>.</summary>
    public static void Fill(ReadOnlySpan<byte> seed, Span<uint> destination)
    {
        if (seed.Length != SeedBytes) throw new ArgumentException($"a mask seed has {SeedBytes} bytes, got {seed.Length}", nameof(seed));
        using var aes = Aes.Create();
        aes.Key = seed.ToArray();
        const int blocksPerChunk = 4096;
        var counters = new byte[blocksPerChunk * 16];
        var stream = new byte[counters.Length];
        long block = 0;
        for (int start = 0; start < destination.Length; start += blocksPerChunk * 4)
        {
            int elements = Math.Min(blocksPerChunk * 4, destination.Length - start);
            int blocks = (elements + 3) / 4;
            counters.AsSpan().Clear();
            for (int b = 0; b < blocks; b++) BinaryPrimitives.WriteInt64LittleEndian(counters.AsSpan(b * 16), block + b);
            aes.EncryptEcb(counters.AsSpan(0, blocks * 16), stream.AsSpan(0, blocks * 16), PaddingMode.None);
            for (int i = 0; i < elements; i++) destination[start + i] = BinaryPrimitives.ReadUInt32LittleEndian(stream.AsSpan(i * 4));
            block += blocks;
        }
    }

    /// <summary>vector ± PRG(seed) over the ring, in place.</summary>
    public static void Apply(ReadOnlySpan<byte> seed, Span<uint> vector, bool subtract)
    {
        var mask = Expand(seed, vector.Length);
        if (subtract) Ring32.SubtractInPlace(vector, mask);
        else Ring32.AddInPlace(vector, mask);
    }
}
