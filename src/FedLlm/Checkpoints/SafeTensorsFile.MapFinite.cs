using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Checkpoints;

public sealed partial class SafeTensorsFile
{
    // Bytes of the file read per step of MapFinite and ReadFiniteInto: a chunk is checked (and converted) while it is
    // still in the core's cache, and the staging buffers, the only fresh memory a load touches besides the model, stay
    // a MiB per thread.
    const int StagingBytes = 1 << 20;

    readonly ConcurrentBag<Staging> _staging = [];

    /// <summary>
    /// A tensor over the file's own bytes for <paramref name="name"/>, as <see cref="Map"/> gives, with every element
    /// checked finite: what a model keeps as a parameter stored in the file's dtype. Owned by the caller; null when the
    /// tensor cannot be mapped (<see cref="ReadFiniteInto"/> then reads it).
    /// </summary>
    /// <remarks>
    /// The check reads the file with positional reads into small reused buffers, on all of libtorch's intra-op threads,
    /// not through the map: the first read of a page through a new map costs a page fault (dear in a virtual machine),
    /// which the model's first forward pass takes anyway, while a positional read copies from the page cache.
    /// </remarks>
    /// <exception cref="NonFiniteTensorException">An element is NaN or infinite.</exception>
    /// <exception cref="CheckpointException">No such tensor, or the file is now shorter than its header says.</exception>
    public Tensor? MapFinite(string name)
    {
        var info = Find(name);
        var dtype = info.Dtype.ToScalarType();
        if (!HasFinitenessTest(dtype)) return null;
        var mapped = MapTensor(info);
        if (mapped is null) return null;
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

    /// <summary>
    /// Copies tensor <paramref name="name"/> into <paramref name="destination"/> as <see cref="ReadInto"/> does, converting
    /// exactly as <c>.to(dtype)</c> does, and checks every converted element finite on the way: one pass over the file's
    /// bytes, read with positional reads into small reused buffers and converted straight into the destination, in
    /// parallel for BF16 into F32.
    /// </summary>
    /// <remarks>
    /// No memory map of the file (reading through a new map costs a page fault per page) and no second pass over the
    /// destination for the check; the check runs on the converted values, which is what the model holds (an F32 value
    /// too large for BF16 becomes infinite). The destination is asked for transparent huge pages first (see
    /// <see cref="MappedPages.AdviseHugePages"/>). On a failed check the destination holds part of the tensor.
    /// </remarks>
    /// <exception cref="NonFiniteTensorException">An element is NaN or infinite in the destination's dtype.</exception>
    /// <exception cref="CheckpointException">No such tensor, the shapes differ, or the file was truncated after opening.</exception>
    /// <exception cref="ArgumentException">The destination is not a contiguous CPU tensor, or its dtype has no
    /// finiteness test (complex types).</exception>
    public void ReadFiniteInto(string name, Tensor destination)
    {
        var info = CheckDestination(name, destination);
        if (!HasFinitenessTest(destination.dtype))
        {
            throw new ArgumentException($"Cannot check {destination.dtype} values finite; read tensor '{name}' with ReadInto.", nameof(destination));
        }
        if (info.ElementCount == 0) return;
        using var noGrad = no_grad();
        MappedPages.AdviseHugePages(destination); // fewer, larger page faults when the copy first touches it
        if (Stream(info, destination.dtype, destination)) throw NonFinite(info, destination.dtype);
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

    /// <summary>Reads the tensor's bytes chunk by chunk, converts each to <paramref name="target"/> into its place in
    /// <paramref name="destination"/> (into a staging buffer when null) and checks it; true when an element is not
    /// finite (the remaining chunks are then skipped).</summary>
    unsafe bool Stream(SafeTensorInfo info, ScalarType target, Tensor? destination)
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
        nint targetAddress = destination is null ? 0 : TensorMemory.Address(destination);
        using var flat = destination?.view(-1); // (numel,) alias of the destination
        int found = 0;
        try
        {
            Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = workers },
                () => Rent(source, perChunk),
                (chunk, loop, staging) =>
                {
                    long first = chunk * perChunk;
                    int count = (int)Math.Min(perChunk, info.ElementCount - first);
                    // Straight into the destination when nothing is converted; else into the staging buffer.
                    byte* target0 = (byte*)targetAddress;
                    var read = convert == Conversion.None && target0 is not null
                        ? new Span<byte>(target0 + first * targetSize, count * targetSize)
                        : staging.Source.bytes[..(count * sourceSize)];
                    ReadExactly(read, info.Offset + first * sourceSize, info.Name);
                    ReadOnlySpan<byte> converted = convert switch
                    {
                        Conversion.None => read,
                        Conversion.WidenBf16 => WidenBf16(read, new Span<byte>(target0 + first * targetSize, count * targetSize)),
                        _ => TorchConvert(staging.Source, flat!, first, count, targetSize),
                    };
                    if (FiniteTensors.AnyNonFinite(converted, target))
                    {
                        Interlocked.Exchange(ref found, 1);
                        loop.Stop();
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
        BFloat16Bits.Widen(MemoryMarshal.Cast<byte, ushort>(bf16), MemoryMarshal.Cast<byte, float>(f32));
        return f32;
    }

    static unsafe ReadOnlySpan<byte> TorchConvert(Tensor staged, Tensor destination, long first, int count, int targetSize)
    {
        using var from = staged.narrow(0, 0, count);          // (count,) in the file's type
        using var to = destination.narrow(0, first, count);   // (count,) of the destination
        var copied = to.copy_(from); // the same object as `to`: disposing both would dispose it twice
        if (!ReferenceEquals(copied, to)) copied.Dispose();
        return new ReadOnlySpan<byte>((void*)TensorMemory.Address(to), count * targetSize);
    }

    /// <summary>The read buffer of one worker of <see cref="Stream"/>, reused across tensors (so a load touches its pages
    /// once).</summary>
    sealed record Staging(Tensor Source) : IDisposable
    {
        public void Dispose() => Source.Dispose();
    }

    Staging Rent(ScalarType source, long elements)
    {
        var kept = new List<Staging>();
        Staging? found = null;
        while (found is null && _staging.TryTake(out var candidate))
        {
            if (candidate.Source.dtype == source && candidate.Source.numel() >= elements) found = candidate;
            else kept.Add(candidate);
        }
        foreach (var other in kept) _staging.Add(other);
        // Kept for the file's lifetime, not for the caller's dispose scope.
        return found ?? new Staging(empty(elements, source, CPU).DetachFromDisposeScope());
    }

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
