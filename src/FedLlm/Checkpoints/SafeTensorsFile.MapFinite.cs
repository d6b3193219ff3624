using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Microsoft.Win32.SafeHandles;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

public sealed partial class SafeTensorsFile
{
    // Bytes of the file read per step of MapFinite: a chunk and its converted copy stay in the core's cache, and the
    // staging buffers, the only fresh memory a load touches besides the model, stay a few MiB.
    const int StagingBytes = 1 << 20;

    readonly ConcurrentBag<Staging> _staging = [];

    /// <summary>
    /// Tensor <paramref name="name"/> as a CPU tensor of <paramref name="dtype"/> for a model to keep, with every element
    /// checked finite, owned by the caller: the file's own pages (as <see cref="Map"/>) when it holds that dtype, otherwise
    /// a private map of an in-memory file (<see cref="MemoryFile"/>) that the file's bytes were converted into, chunk by
    /// chunk, exactly as <c>.to(dtype)</c> converts. Either way the load writes no fresh memory of its own.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The finiteness check reads the file with positional reads into small reused buffers, on all of libtorch's
    /// intra-op threads, not through the map: reading a page through a new map costs a page fault (dear in a virtual
    /// machine), and the model's first forward pass takes those faults anyway. In the converting case the check runs on
    /// each converted chunk, so it sees what the model will hold (an F32 value too large for BF16 becomes infinite).
    /// </para>
    /// <para>
    /// Null when it cannot be done this way: not on Linux, no elements, a dtype without a finiteness test, or a
    /// same-dtype tensor that cannot be mapped (<see cref="Map"/>) and no memfd; <see cref="ReadInto"/> then reads it.
    /// </para>
    /// </remarks>
    /// <exception cref="NonFiniteTensorException">An element is NaN or infinite in <paramref name="dtype"/>.</exception>
    /// <exception cref="CheckpointException">No such tensor, or the file is now shorter than its header says.</exception>
    public Tensor? MapFinite(string name, ScalarType dtype)
    {
        var info = Find(name);
        if (info.ElementCount == 0 || !HasFinitenessTest(dtype)) return null;
        var sourceType = info.Dtype.ToScalarType();
        if (sourceType == dtype && MapTensor(info) is { } mapped)
        {
            try
            {
                if (Stream(info, dtype, destination: null)) throw NonFinite(info, dtype);
                return mapped;
            }
            catch
            {
                mapped.Dispose();
                throw;
            }
        }
        using var memory = MemoryFile.TryCreate(info.Name);
        if (memory is null) return null;
        if (Stream(info, dtype, memory)) throw NonFinite(info, dtype);
        using var flat = MemoryFile.TryMap(memory, info.ElementCount, dtype); // (numel,)
        return flat?.view(info.Shape);                                       // info.Shape
    }

    static bool HasFinitenessTest(ScalarType dtype)
    {
        try
        {
            FiniteTensors.AnyNonFinite([], dtype);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Reads the tensor's bytes chunk by chunk, converts each to <paramref name="target"/>, checks it and writes
    /// it to <paramref name="destination"/> at its place (nothing written when null); true when an element is not
    /// finite (the remaining chunks are then skipped).</summary>
    bool Stream(SafeTensorInfo info, ScalarType target, SafeFileHandle? destination)
    {
        var source = info.Dtype.ToScalarType();
        int sourceSize = info.Dtype.ElementSize();
        int targetSize = (int)ElementSize(target);
        long perChunk = Math.Max(1, Math.Min(_chunkBytes, StagingBytes) / Math.Max(sourceSize, targetSize));
        long chunks = (info.ElementCount + perChunk - 1) / perChunk;
        var convert = ChooseConversion(source, target);
        // libtorch's copy_ spreads over the intra-op threads itself; from several .NET threads at once they would
        // oversubscribe the cores, so only the conversions done here run chunks in parallel.
        int workers = convert == Conversion.Torch ? 1 : Math.Max(1, get_num_threads());
        int found = 0;
        try
        {
            Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = workers },
                () => Rent(source, target, perChunk),
                (chunk, loop, staging) =>
                {
                    long first = chunk * perChunk;
                    int count = (int)Math.Min(perChunk, info.ElementCount - first);
                    var read = staging.Source.bytes[..(count * sourceSize)];
                    ReadExactly(read, info.Offset + first * sourceSize, info.Name);
                    ReadOnlySpan<byte> converted = convert switch
                    {
                        Conversion.None => read,
                        Conversion.WidenBf16 => WidenBf16(read, staging.Target!.bytes[..(count * targetSize)]),
                        _ => TorchConvert(staging, count, targetSize),
                    };
                    if (FiniteTensors.AnyNonFinite(converted, target))
                    {
                        Interlocked.Exchange(ref found, 1);
                        loop.Stop();
                    }
                    else if (destination is not null)
                    {
                        RandomAccess.Write(destination, converted, first * targetSize);
                    }
                    return staging;
                },
                _staging.Add);
        }
        catch (AggregateException e)
        {
            // A truncated file fails in every worker that reads past its end; the first failure is the message.
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        return found != 0;
    }

    enum Conversion { None, WidenBf16, Torch }

    static Conversion ChooseConversion(ScalarType source, ScalarType target) =>
        source == target ? Conversion.None
        : source == ScalarType.BFloat16 && target == ScalarType.Float32 && BitConverter.IsLittleEndian ? Conversion.WidenBf16
        : Conversion.Torch;

    /// <summary>BF16 to F32 is exact: a bfloat16 is the top half of the float32 with the same bits, which is also what
    /// libtorch's conversion computes (NaN payloads included).</summary>
    static ReadOnlySpan<byte> WidenBf16(ReadOnlySpan<byte> bf16, Span<byte> f32)
    {
        var from = MemoryMarshal.Cast<byte, ushort>(bf16);
        var to = MemoryMarshal.Cast<byte, uint>(f32);
        int i = 0;
        for (; i + Vector256<ushort>.Count <= from.Length; i += Vector256<ushort>.Count)
        {
            var (lower, upper) = Vector256.Widen(Vector256.Create(from[i..]));  // 16 x u16 -> 2 x (8 x u32), in order
            Vector256.ShiftLeft(lower, 16).CopyTo(to[i..]);
            Vector256.ShiftLeft(upper, 16).CopyTo(to[(i + Vector256<uint>.Count)..]);
        }
        for (; i < from.Length; i++) to[i] = (uint)from[i] << 16;
        return f32;
    }

    static ReadOnlySpan<byte> TorchConvert(Staging staging, int count, int targetSize)
    {
        using (var from = staging.Source.narrow(0, 0, count))  // (count,) in the file's type
        using (var to = staging.Target!.narrow(0, 0, count))   // (count,) in the target type
        using (to.copy_(from)) { }
        return staging.Target.bytes[..(count * targetSize)];
    }

    /// <summary>Buffers of one worker of <see cref="Stream"/>, reused across tensors (so a load touches their pages once).</summary>
    sealed record Staging(Tensor Source, Tensor? Target) : IDisposable
    {
        public void Dispose()
        {
            Source.Dispose();
            Target?.Dispose();
        }
    }

    Staging Rent(ScalarType source, ScalarType target, long elements)
    {
        var kept = new List<Staging>();
        Staging? found = null;
        while (found is null && _staging.TryTake(out var candidate))
        {
            if (Fits(candidate, source, target, elements)) found = candidate;
            else kept.Add(candidate);
        }
        foreach (var other in kept) _staging.Add(other);
        // Kept for the file's lifetime, not for the caller's dispose scope.
        return found ?? new Staging(
            empty(elements, source, CPU).DetachFromDisposeScope(),
            source == target ? null : empty(elements, target, CPU).DetachFromDisposeScope());
    }

    static bool Fits(Staging staging, ScalarType source, ScalarType target, long elements) =>
        staging.Source.dtype == source && staging.Source.numel() >= elements
        && (source == target ? staging.Target is null : staging.Target is { } t && t.dtype == target && t.numel() >= elements);

    static long ElementSize(ScalarType dtype)
    {
        using var probe = empty(0, dtype, CPU);
        return probe.element_size();
    }

    NonFiniteTensorException NonFinite(SafeTensorInfo info, ScalarType dtype)
    {
        // Only on failure: count the bad elements, in the type the model would have held.
        using var noGrad = no_grad();
        using var values = Read(info.Name, dtype);
        using var finite = values.isfinite();
        using var bad = finite.logical_not().sum();
        return new NonFiniteTensorException(Path, info.Name, bad.item<long>(), "load");
    }

    void DisposeStaging()
    {
        while (_staging.TryTake(out var staging)) staging.Dispose();
    }
}
