using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace FedLlm.Runtime;

/// <summary>Drops the pages of a memory-mapped file that a tensor views from this process's resident set (Linux
/// madvise MADV_DONTNEED); elsewhere, or without that call, does nothing.</summary>
/// <remarks>
/// A file-backed page counts in a process's RSS while it is mapped, even though the page cache holds it anyway. Copying a
/// mapped checkpoint into the model would otherwise hold the model plus every file page it came from until the mapping
/// goes, so the copy releases each piece once it is copied, and the load's peak stays the model plus one piece. Only for
/// private mappings nobody wrote to: MADV_DONTNEED on them just unmaps, and a later read faults the same bytes back in
/// from the file; on anonymous memory it would zero the pages.
/// </remarks>
internal static partial class MappedPages
{
    const int MadvDontNeed = 4;
    static bool unavailable = !OperatingSystem.IsLinux();

    /// <summary>Releases the whole pages inside <paramref name="contiguousView"/>'s bytes (partial pages at either end
    /// stay: they may belong to a neighbouring tensor still in use).</summary>
    public static unsafe void Release(Tensor contiguousView)
    {
        if (unavailable) return;
        long pageSize = Environment.SystemPageSize;
        var bytes = contiguousView.bytes;
        fixed (byte* start = bytes)
        {
            long first = ((long)start + pageSize - 1) / pageSize * pageSize;
            long end = ((long)start + bytes.Length) / pageSize * pageSize;
            if (end <= first) return;
            try
            {
                madvise((nint)first, (nuint)(end - first), MadvDontNeed);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                unavailable = true;
            }
        }
    }

    /// <summary>Asks for transparent huge pages (MADV_HUGEPAGE) over the whole 2 MiB pages inside
    /// <paramref name="contiguous"/>'s memory, before it is first written.</summary>
    /// <remarks>
    /// Filling fresh memory costs one page fault per 4 KiB page touched, and in a virtual machine a fault is dear: a
    /// profile of a 1B-parameter load into float32 put most of its system time in them. With huge pages each fault maps
    /// 2 MiB. Linux's default THP mode ("madvise") grants them only where asked; it is advice, so a kernel without THP, or
    /// without free huge pages, simply keeps 4 KiB pages. Only worth it for memory of many megabytes.
    /// </remarks>
    public static unsafe void AdviseHugePages(Tensor contiguous)
    {
        const long HugePage = 2L << 20;
        if (unavailable || contiguous.numel() * contiguous.element_size() < 2 * HugePage) return;
        long start = FedLlm.Checkpoints.TensorMemory.Address(contiguous);
        long first = (start + HugePage - 1) / HugePage * HugePage;
        long end = (start + contiguous.numel() * contiguous.element_size()) / HugePage * HugePage;
        if (end <= first) return;
        try
        {
            madvise((nint)first, (nuint)(end - first), MadvHugePage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
        }
    }

    const int MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int madvise(nint address, nuint length, int advice);
}
