using System.Runtime.InteropServices;

namespace FedLlm.Runtime;

/// <summary>
/// Makes glibc keep freed memory for reuse instead of handing it back to the system, for processes that receive and
/// free a whole adapter every round (the federation server and client). Applied by those commands at start-up, never
/// by the library on its own; the user's own allocator setting stands.
/// </summary>
/// <remarks>
/// Why: libtorch allocates CPU tensors with malloc. Received tensors live for a round and are freed together; glibc
/// then unmaps the per-thread arenas' emptied heaps and trims the main heap, so the next round's tensors are fresh
/// pages that the kernel must fault in and zero one by one. On a virtual machine that first touch costs more than
/// the network transfer itself (bench/README.md, "Transfer at line speed"). Here: one arena (every thread's blocks in
/// the main heap, which only the trim threshold shrinks), blocks under 32 MiB (glibc's largest dynamic threshold) from
/// that heap, and a trim threshold of 2 GiB, so a round's freed tensors are there for the next round's. The cost is
/// that memory freed after a peak stays with the process (up to the trim threshold).
/// Elsewhere than glibc (musl, macOS, Windows) this does nothing.
/// </remarks>
public static class AllocatorRetention
{
    /// <summary>Blocks of this size and more are mapped on their own (and unmapped at free).</summary>
    public const int MmapThresholdBytes = 32 << 20;

    /// <summary>Free memory at the top of the heap is returned to the system only beyond this.</summary>
    public const int TrimThresholdBytes = int.MaxValue;

    // mallopt parameter numbers from glibc's malloc.h.
    const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3, M_ARENA_MAX = -8;

    static readonly string[] UserSettings =
        ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST"];

    static readonly Lock gate = new();
    static string? applied;

    /// <summary>Applies the policy once (later calls return the first outcome) and says what is in force, for the
    /// start-up log: the policy, the user's own setting, or the defaults (not glibc).</summary>
    public static string Apply()
    {
        lock (gate)
        {
            return applied ??= ApplyOnce();
        }
    }

    static string ApplyOnce()
    {
        if (!OperatingSystem.IsLinux()) return "allocator defaults (not Linux)";
        string? own = UserSettings.FirstOrDefault(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));
        if (own is null && (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "").Contains("glibc.malloc.", StringComparison.Ordinal))
            own = "GLIBC_TUNABLES";
        if (own is not null) return $"the user's allocator setting ({own})";
        try
        {
            bool set = mallopt(M_ARENA_MAX, 1) == 1 && mallopt(M_MMAP_THRESHOLD, MmapThresholdBytes) == 1 && mallopt(M_TRIM_THRESHOLD, TrimThresholdBytes) == 1;
            return set ? "glibc keeps freed memory for reuse (one arena, 32 MiB mmap threshold, no trimming below 2 GiB)" : "allocator defaults (mallopt refused)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "allocator defaults (no mallopt: not glibc)";
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int mallopt(int parameter, int value);
}
