using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace FedLlm.Runtime;

/// <summary>An anonymous in-memory file (Linux memfd_create) that is filled with positional writes and then viewed as a
/// tensor through a private memory map; elsewhere, or where the call is missing, unavailable (callers fall back to plain
/// tensors).</summary>
/// <remarks>
/// <para>
/// Why not a plain tensor: its memory is fresh anonymous memory, and the process pays a page fault for every 4 KiB page
/// it first writes (the kernel zeroes the page, then the copy overwrites it). In a virtual machine each such fault is
/// dear, and on the machines FedLlm was measured on, filling fresh anonymous memory from user space cost several times
/// what writing the same bytes into a memfd with <c>pwrite</c> does: the kernel copies into pages it allocates itself,
/// skips zeroing pages that are written whole, and takes no user page fault. The process then reads the pages through
/// a map, the way it reads a memory-mapped checkpoint.
/// </para>
/// <para>
/// The map is private (copy-on-write): a write to the tensor copies the page it touches into anonymous memory, while
/// the memfd keeps its own copy until the last view of the map is gone. Meant for weights that are written once and
/// then read (a frozen base converted to another dtype); a tensor rewritten in place holds its written pages twice.
/// </para>
/// </remarks>
internal static partial class MemoryFile
{
    const uint CloseOnExec = 1; // MFD_CLOEXEC: child processes do not inherit the weights
    static bool unavailable = !OperatingSystem.IsLinux();

    /// <summary>A new empty memfd, owned by the caller, or null where memfd_create is not available.</summary>
    public static SafeFileHandle? TryCreate(string name)
    {
        if (unavailable) return null;
        int fd;
        try
        {
            fd = memfd_create(name, CloseOnExec);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
            return null;
        }
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>A 1-D tensor of <paramref name="elements"/> elements of <paramref name="dtype"/> over the memfd's first
    /// bytes (a private map through /proc/self/fd), owned by the caller; the memfd lives until the tensor and every view
    /// of it are disposed, so the caller may close its handle at once. Null if the map is refused.</summary>
    public static Tensor? TryMap(SafeFileHandle file, long elements, ScalarType dtype)
    {
        try
        {
            return from_file($"/proc/self/fd/{file.DangerousGetHandle()}", shared: false, size: elements, dtype: dtype);
        }
        catch (Exception e) when (e is ExternalException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int memfd_create(string name, uint flags);
}
