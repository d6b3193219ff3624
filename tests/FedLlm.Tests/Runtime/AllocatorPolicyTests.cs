using System.Runtime.InteropServices;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Tests.Runtime;

/// <summary>mallinfo2 counts the whole process's allocations, so a test reading it must not run beside others.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocatorStatisticsCollection
{
    public const string Name = "reads the process's allocator statistics";
}

/// <summary>The library's allocator policy: large tensors are mapped on their own, so their memory goes back at free.</summary>
[Collection(AllocatorStatisticsCollection.Name)]
public class AllocatorPolicyTests
{
    [Fact]
    public void A_tensor_of_a_few_MiB_is_mapped_even_after_a_larger_one_was_freed()
    {
        // Prepare: glibc's own policy would raise its mmap threshold to 16 MiB when this block is freed, and serve the
        // next few-MiB tensors from the heap, where freed memory stays resident
        Assert.True(OperatingSystem.IsLinux(), "FedLlm's tests run on Linux, where the policy applies");
        Assert.True(AllocatorPolicy.Applied, $"the policy is not in force: {AllocatorPolicy.Description} (a MALLOC_* variable in the test environment?)");
        using (var large = empty([4L << 20], ScalarType.Float32)) large.fill_(1); // 16 MiB
        long mappedBefore = (long)mallinfo2().hblkhd;

        // Execute: a 2 MiB tensor
        using var tensor = empty([512L * 1024], ScalarType.Float32);
        long mappedWhileAlive = (long)mallinfo2().hblkhd;

        // Assert: it is a mapping of its own (at least its 2 MiB more mapped bytes)
        Assert.True(mappedWhileAlive - mappedBefore >= 2L << 20, $"mapped bytes grew by {mappedWhileAlive - mappedBefore}, not by the tensor's 2 MiB");
        Assert.Contains("1 MiB", AllocatorPolicy.Description);
    }

    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo2 mallinfo2();
}
