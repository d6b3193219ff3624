using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FedLlm.Runtime;

/// <summary>
/// Makes glibc keep the memory of freed tensors for the next ones instead of handing it back to the system after every
/// use, so a training step does not page-fault (and have the kernel zero) its activations afresh each time. Set once, at
/// start-up, by the library, unless the user already chose an allocator setting.
/// </summary>
/// <remarks>
/// <para>libtorch allocates CPU tensors with malloc. glibc maps every block above its mmap threshold on its own and unmaps
/// it at free; the threshold adapts upwards only to 32 MiB, so the loss's logits chunks (hundreds of MB), attention's
/// buffers and anything else of that size is faulted in page by page on every use, and blocks that do come from the
/// heap go back whenever the free space at its top passes the trim threshold. A training step allocates and frees
/// several GB this way; the kernel's fault path and page zeroing took about a third of a bf16 step's CPU time in a
/// profile (bench/README.md, "The allocator keeps freed memory").</para>
/// <para>The policy: no block is mapped on its own (M_MMAP_MAX = 0: every block comes from a heap), the heap's top is
/// never trimmed by free (trim threshold −1), and a thread's own heaps are not unmapped when they empty (a top pad of
/// 64 MiB, the size of such a heap: glibc keeps that much free at a heap's top). Freed memory is reused by the next
/// allocation of the same size class, which is what a step that repeats the same shapes asks for. One case stays: a
/// thread other than the process's first gets a block of more than 64 MiB as a mapping of its own whatever the
/// settings, so the training loss keeps its chunks below that (<see cref="Training.LossChunk"/>). The peak resident
/// memory stays what the live tensors and their holes need (the same peak as glibc's default in the measurements);
/// what changes is that it is not returned between steps. An explicit <see cref="NativeHeap.Trim"/> (after loading a checkpoint) still hands free pages back.</para>
/// <para>The user's own setting stands: any MALLOC_* tuning variable, or a glibc.malloc tunable in GLIBC_TUNABLES,
/// leaves glibc as configured (for example MALLOC_MMAP_THRESHOLD_=1048576 for the leanest resident memory at the cost
/// of a fault on every use). Elsewhere than glibc (musl, macOS, Windows) this does nothing.</para>
/// </remarks>
public static class AllocatorPolicy
{
    // mallopt parameter numbers from glibc's malloc.h.
    const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_MAX = -4;

    /// <summary>The trim threshold that turns trimming off: mallopt(3) documents −1 as "disables trimming completely".</summary>
    const int NeverTrim = -1;

    /// <summary>glibc's size of a thread's heap on 64-bit systems (HEAP_MAX_SIZE), as the top pad that keeps it mapped.</summary>
    const int ThreadHeapBytes = 64 << 20;

    static readonly string[] UserSettings =
        ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST"];

    /// <summary>What is in force: the library's policy, the user's own setting, or glibc's defaults and why.</summary>
    public static string Description { get; private set; } = "allocator defaults (not applied)";

    /// <summary>True when the library's policy is in force.</summary>
    public static bool Applied { get; private set; }

#pragma warning disable CA2255 // A module initializer runs before FedLlm's first tensor is allocated.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Apply()
    {
        if (!OperatingSystem.IsLinux()) { Description = "allocator defaults (not Linux)"; return; }
        string? own = UserSettings.FirstOrDefault(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));
        if (own is null && (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "").Contains("glibc.malloc.", StringComparison.Ordinal))
            own = "GLIBC_TUNABLES";
        if (own is not null) { Description = $"the user's allocator setting ({own})"; return; }
        try
        {
            if (mallopt(M_TRIM_THRESHOLD, NeverTrim) == 1 && mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TOP_PAD, ThreadHeapBytes) == 1)
            {
                Applied = true;
                Description = "freed memory kept for reuse: no per-block mappings, no trimming, 64 MiB top pad (FedLlm's allocator policy)";
            }
            else Description = "allocator defaults (mallopt refused)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Description = "allocator defaults (no mallopt: not glibc)";
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int mallopt(int parameter, int value);
}
