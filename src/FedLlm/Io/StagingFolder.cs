using System.Diagnostics;

namespace FedLlm.Io;

/// <summary>
/// Folders assembled under a temporary name <c>.{name}.{pid}.tmp</c> and renamed into place when complete (checkpoints,
/// federated run states). A writer killed mid-way leaves its staging folder behind; the process id in the name tells
/// a later run whether the writer is still alive.
/// </summary>
public static class StagingFolder
{
    const string Suffix = ".tmp";

    /// <summary>The staging path of this process for the folder <paramref name="name"/> in <paramref name="directory"/>.</summary>
    public static string For(string directory, string name) => Path.Combine(directory, $".{name}.{Environment.ProcessId}{Suffix}");

    /// <summary>
    /// Deletes staging folders <c>.{prefix}*.{pid}.tmp</c> in <paramref name="directory"/> whose writer process is no longer
    /// running; returns their paths. Folders of live processes (this one included) are left alone.
    /// </summary>
    public static IReadOnlyList<string> RemoveStale(string directory, string prefix)
    {
        if (!Directory.Exists(directory)) return [];
        var removed = new List<string>();
        foreach (string path in Directory.GetDirectories(directory, $".{prefix}*{Suffix}"))
        {
            string name = Path.GetFileName(path)[..^Suffix.Length];
            int dot = name.LastIndexOf('.');
            if (dot < 0 || !int.TryParse(name[(dot + 1)..], out int pid) || IsRunning(pid)) continue;
            try
            {
                Directory.Delete(path, recursive: true);
                removed.Add(path);
            }
            catch (IOException) { } // another run cleaning up the same folder; it is gone either way
        }
        return removed;
    }

    static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }      // no such process
        catch (InvalidOperationException) { return false; }
    }
}
