using System.Diagnostics;
using FedLlm.Evaluation.Code;

namespace FedLlm.Tests.Evaluation.Code;

/// <summary>
/// Runs a Python snippet in the same OS sandbox as <see cref="PythonSandbox"/> but without sandbox_guard.py, so a test
/// sees what the kernel-level isolation alone stops (the guard refuses most of these calls before they reach it).
/// </summary>
internal static class RawSandboxRun
{
    public sealed record Outcome(int ExitCode, string Stdout, string Stderr, bool TimedOut);

    public static Outcome Run(PythonSandbox sandbox, string code, TimeSpan timeout)
    {
        Assert.True(sandbox.Launcher.IsIsolated, "these tests are about the bubblewrap sandbox; bwrap must be installed (./test.sh does)");
        var start = sandbox.Launcher.StartInfo(["-I", "-c", code]);
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var exited = process.WaitForExit(timeout);
        if (!exited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(5));
        return new Outcome(process.ExitCode, stdout.Result, stderr.Result, !exited);
    }

    /// <summary>Host processes whose command line contains <paramref name="marker"/>.</summary>
    public static List<int> ProcessesWithMarker(string marker)
    {
        var found = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(directory, "cmdline")).Contains(marker, StringComparison.Ordinal)) found.Add(pid);
            }
            catch (IOException)
            {
                // Exited while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return found;
    }
}
