namespace FedLlm.Runtime;

/// <summary>
/// [0, count) split into one contiguous share per part. Each part takes its own share front to back, a chunk at a
/// time; a part whose share is empty takes chunks from the back of another part's share. Every index is taken exactly
/// once, whatever the threads' speeds.
/// </summary>
/// <remarks>
/// A static split leaves the faster thread waiting for the slower one (a thread that started late, or one the
/// hypervisor paused); chunks handed out from one shared counter balance but interleave the threads' runs through
/// memory, which streams worse. Here each thread streams one run, and only the end of a slower thread's run moves.
/// A share's front and back live in one 64-bit word, changed by compare-and-swap, so an owner and a thief never take
/// the same chunk.
/// </remarks>
public sealed class StealingRanges
{
    /// <summary>Longs per share: each share's word on a cache line of its own, so an owner's updates do not slow
    /// another owner's.</summary>
    const int Stride = 8;

    long[] shares = [];
    int parts, chunk;

    /// <summary>Shares of [0, <paramref name="count"/>) for <paramref name="parts"/> parts, taken
    /// <paramref name="chunk"/> indices at a time.</summary>
    public StealingRanges(int count, int parts, int chunk) => Reset(count, parts, chunk);

    /// <summary>Starts over with new shares, as the constructor would, reusing this object's memory: a decode step
    /// splits a few hundred products, and garbage made for each of them would only bring collections (and with them
    /// finalizers, see <see cref="Scalars"/>) more often. Not while parts are still taking.</summary>
    public void Reset(int count, int parts, int chunk)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunk, 1);
        this.parts = parts;
        this.chunk = chunk;
        if (shares.Length < parts * Stride) shares = new long[parts * Stride];
        for (int p = 0; p < parts; p++)
            shares[p * Stride] = Pack((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts));
    }

    /// <summary>The next indices [<paramref name="start"/>, <paramref name="end"/>) for <paramref name="part"/>: from
    /// the front of its own share, or else from the back of another's; false once every share is empty.</summary>
    public bool TryTake(int part, out int start, out int end)
    {
        if (TryTakeFrom(part, fromBack: false, out start, out end)) return true;
        for (int i = 1; i < parts; i++)
            if (TryTakeFrom((part + i) % parts, fromBack: true, out start, out end)) return true;
        return false;
    }

    /// <summary>A chunk of <paramref name="part"/>'s share: its first (the owner's) or its last (a thief's).</summary>
    bool TryTakeFrom(int part, bool fromBack, out int start, out int end)
    {
        ref long share = ref shares[part * Stride];
        while (true)
        {
            long seen = Volatile.Read(ref share);
            (int front, int back) = Unpack(seen);
            if (front >= back) { start = end = 0; return false; }
            (start, end) = fromBack ? (Math.Max(front, back - chunk), back) : (front, Math.Min(back, front + chunk));
            long left = fromBack ? Pack(front, start) : Pack(end, back);
            if (Interlocked.CompareExchange(ref share, left, seen) == seen) return true;
        }
    }

    static long Pack(int front, int back) => ((long)back << 32) | (uint)front;

    static (int Front, int Back) Unpack(long word) => ((int)(uint)word, (int)(word >> 32));
}
