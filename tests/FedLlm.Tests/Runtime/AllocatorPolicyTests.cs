using System.Runtime.InteropServices;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Tests.Runtime;

/// <summary>The library's allocator policy: freed tensor memory stays in the heap for the next tensor.</summary>
[Collection(RunsAloneCollection.Name)] // mallinfo2 counts the whole process's allocations
public class AllocatorPolicyTests
{
    // Above glibc's largest adaptive mmap threshold (32 MiB), so mapped on its own by default; within a thread's heap
    // (64 MiB), which a thread other than the process's first (as a test's) allocates from.
    const long Bytes = 48L << 20;

    // The runtime's own threads allocate and free a little meanwhile.
    const long Slack = 1L << 20;

    [Fact]
    public void A_large_tensor_comes_from_the_heap_and_its_memory_stays_there_after_it_is_freed()
    {
        // Prepare: the policy is in force (the test run sets no MALLOC_* variable)
        Assert.True(OperatingSystem.IsLinux(), "FedLlm's tests run on Linux, where the policy applies");
        Assert.True(AllocatorPolicy.Applied, $"the policy is not in force: {AllocatorPolicy.Description} (a MALLOC_* variable in the test environment?)");
        var before = mallinfo2();

        // Execute: a 48 MiB tensor, written so its pages are resident, then freed
        MallInfo2 whileAlive;
        using (var tensor = empty([Bytes / 4], ScalarType.Float32))
        {
            tensor.fill_(1);
            whileAlive = mallinfo2();
        }
        var afterFree = mallinfo2();

        // Assert: it was not a mapping of its own, and the heap did not shrink when it was freed
        Assert.True((long)whileAlive.hblkhd - (long)before.hblkhd < Bytes,
            $"mapped bytes grew by {(long)whileAlive.hblkhd - (long)before.hblkhd}: the tensor was mapped on its own");
        Assert.True((long)whileAlive.arena - (long)before.arena >= 0 && (long)whileAlive.uordblks - (long)before.uordblks >= Bytes - Slack,
            $"the heap's bytes in use grew by {(long)whileAlive.uordblks - (long)before.uordblks}, not by the tensor's {Bytes}");
        Assert.True((long)afterFree.arena >= (long)whileAlive.arena,
            $"the heap shrank from {whileAlive.arena} to {afterFree.arena} bytes when the tensor was freed (trimmed, or a thread heap unmapped)");
        Assert.True((long)afterFree.fordblks - (long)whileAlive.fordblks >= Bytes - Slack,
            $"the heap's free bytes grew by {(long)afterFree.fordblks - (long)whileAlive.fordblks}, not by the freed tensor's {Bytes}");
        Assert.Contains("FedLlm's allocator policy", AllocatorPolicy.Description);
    }

    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo2 mallinfo2();
}
