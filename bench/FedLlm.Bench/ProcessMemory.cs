using System.Globalization;
using System.Runtime.InteropServices;

namespace FedLlm.Bench;

/// <summary>Resident-set figures of this process from /proc/self/status (Linux).</summary>
public static class ProcessMemory
{
    /// <summary>VmHWM: the peak resident set since the process started.</summary>
    public static long PeakRssBytes() => Read("VmHWM");

    /// <summary>VmRSS: the resident set now.</summary>
    public static long RssBytes() => Read("VmRSS");

    /// <summary>Minor page faults of this process so far (/proc/self/stat, field 10): each is a page of memory the kernel
    /// had to map (and zero) on first touch, which on a virtual machine costs microseconds apiece.</summary>
    public static long MinorFaults()
    {
        string stat = File.ReadAllText("/proc/self/stat");
        // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[7], CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Returns the free memory glibc keeps in its heaps to the system (malloc_trim), so that a finished FedLlm round
    /// does not sit on gigabytes while the PyTorch child runs. VmHWM, already reached, is unaffected.
    /// </summary>
    public static void ReleaseFreeHeap() => malloc_trim(0);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int malloc_trim(nuint pad);

    static long Read(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(field + ":", StringComparison.Ordinal)) continue;
            // "VmHWM:	 10461340 kB"
            var parts = line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
        }
        throw new InvalidOperationException($"/proc/self/status has no {field} line");
    }
}
