using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Runtime;

/// <summary>Process-wide libtorch settings, made explicit at start-up instead of left to libtorch's guesses.</summary>
public static class TorchRuntime
{
    /// <summary>
    /// Sets the intra-op thread count (default: all cores). libtorch's own default can oversubscribe a container whose
    /// CPU quota is smaller than the host's core count, which costs far more than it gains.
    /// </summary>
    public static int ConfigureThreads(int? threads = null)
    {
        int count = threads ?? Environment.ProcessorCount;
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be positive");
        torch.set_num_threads(count);
        return count;
    }

    /// <summary>Parses "cpu", "cuda" or "cuda:N" and checks that the device is usable with this libtorch build.</summary>
    public static Device ParseDevice(string name)
    {
        string normalized = name.Trim().ToLowerInvariant();
        if (normalized == "cpu") return CPU;
        if (normalized == "cuda" || normalized.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new ArgumentException($"device '{name}': CUDA is not available in this libtorch build (FedLlm ships TorchSharp-cpu; reference a libtorch-cuda package to use a GPU)");
            return torch.device(normalized);
        }
        throw new ArgumentException($"device '{name}' is not recognised; use cpu, cuda or cuda:N");
    }

    /// <summary>Peak resident memory of this process so far, in bytes (VmHWM), or null where /proc is absent.</summary>
    public static long? PeakResidentBytes() => ProcStatus("VmHWM:");

    /// <summary>Resident memory of this process now, in bytes (VmRSS), or null where /proc is absent.</summary>
    public static long? ResidentBytes() => ProcStatus("VmRSS:");

    static long? ProcStatus(string field)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return null;
        foreach (var line in File.ReadLines(status))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0]) * 1024;
        return null;
    }
}
