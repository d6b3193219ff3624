using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FedLlm.Runtime;

/// <summary>
/// Makes glibc give the memory of large freed tensors back to the system, so that a training step's peak RSS is the
/// tensors alive at its worst moment rather than everything the heap ever grew to. Set once, at start-up, by the
/// library, unless the user already chose an allocator setting.
/// </summary>
/// <remarks>
/// libtorch allocates CPU tensors with malloc. glibc serves a block at or above its mmap threshold with a private
/// mapping that is unmapped at free, but after the first such free it raises the threshold to that block's size (up
/// to 32 MiB). From then on every activation of a few MiB comes from the heap, and the heap does not shrink past its
/// highest live block: a LoRA training step interleaves activations kept for backward with freed temporaries of
/// other sizes, so the heap grows to about twice the live peak and stays there. On the SmolLM-135M shape at batch
/// 4 × 512 in fp32 that was 4.7 GiB resident but free at the end of the forward on top of 3 GiB of live tensors
/// (bench/README.md, "Issue 19: where the peak goes"). Setting the threshold explicitly turns the dynamic adjustment
/// off (mallopt(3)), so blocks of <see cref="MmapThresholdBytes"/> and more are always mapped and unmapped. The price
/// is that those pages are faulted in (and zeroed by the kernel) again on each use.
/// The user's own setting stands: any MALLOC_* tuning variable or a glibc.malloc tunable in GLIBC_TUNABLES leaves
/// glibc as configured. Elsewhere than glibc (musl, macOS, Windows) this does nothing.
/// </remarks>
public static class AllocatorPolicy
{
    /// <summary>Blocks of this size and more are mapped on their own and returned to the system at free.</summary>
    /// <remarks>Smaller than a hidden-state row block of the smallest supported model at a training batch, large
    /// enough that small tensors (norm statistics, LoRA's rank-r activations, scalars) stay on the heap.</remarks>
    public const int MmapThresholdBytes = 1 << 20;

    // mallopt parameter numbers from glibc's malloc.h.
    const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;

    static readonly string[] UserSettings =
        ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST"];

    /// <summary>What is in force: the library's policy, the user's own setting, or nothing (not glibc).</summary>
    public static string Description { get; private set; } = "allocator defaults (not applied)";

    /// <summary>True when the library's mmap threshold is in force.</summary>
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
            // The trim threshold is set too: glibc ties the two (setting either fixes both), and the default 128 KiB
            // keeps returning the top of the heap as before.
            if (mallopt(M_MMAP_THRESHOLD, MmapThresholdBytes) == 1 && mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1)
            {
                Applied = true;
                Description = $"glibc mmap threshold fixed at {MmapThresholdBytes >> 20} MiB (FedLlm's allocator policy)";
            }
            else Description = "allocator defaults (mallopt refused)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Description = "allocator defaults (no mallopt: not glibc)";
        }
    }

    /// <summary>Call before any direct torch use in code that may run before FedLlm's own (e.g. test fixtures).</summary>
    public static void EnsureApplied() => RuntimeHelpers.RunModuleConstructor(typeof(AllocatorPolicy).Module.ModuleHandle);

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int mallopt(int parameter, int value);
}
