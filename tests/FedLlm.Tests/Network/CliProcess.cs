using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace FedLlm.Tests.Network;

/// <summary>
/// A <c>fedllm</c> process started from the built FedLlm.Cli.dll (the one of this test build's configuration), its
/// stdout and stderr collected line by line so a test can wait for a log event and then act on it (e.g. kill -9).
/// </summary>
internal sealed class CliProcess : IDisposable
{
    readonly Process process;
    readonly ConcurrentQueue<string> lines = new();
    readonly SemaphoreSlim arrived = new(0);

    public CliProcess(string name, string workingDirectory, params string[] arguments) : this(name, workingDirectory, null, arguments)
    {
    }

    /// <summary>A process with extra environment variables (e.g. fault injection).</summary>
    public CliProcess(string name, string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] arguments)
    {
        Name = name;
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(CliDll);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["FEDLLM_DEBUG"] = "1";
        start.Environment["NO_COLOR"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Name { get; }
    public IReadOnlyList<string> Lines => lines.ToArray();
    public string Log => string.Join("\n", lines);
    public bool HasExited => process.HasExited;

    void Add(string? line)
    {
        if (line is null) return;
        lines.Enqueue(line);
        arrived.Release();
    }

    /// <summary>Waits until a line matches; returns the match. Fails the test with the log so far on timeout or exit.</summary>
    public Match WaitFor(string pattern, TimeSpan timeout)
    {
        var regex = new Regex(pattern);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            foreach (var line in lines)
                if (regex.Match(line) is { Success: true } m) return m;
            if (process.HasExited && arrived.CurrentCount == 0)
            {
                process.WaitForExit();
                foreach (var line in lines)
                    if (regex.Match(line) is { Success: true } m) return m;
                throw new Xunit.Sdk.XunitException($"{Name} exited ({process.ExitCode}) before /{pattern}/:\n{Log}");
            }
            var left = timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero) throw new Xunit.Sdk.XunitException($"{Name}: no /{pattern}/ within {timeout.TotalSeconds} s:\n{Log}");
            arrived.Wait(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
        }
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!process.WaitForExit(timeout)) throw new Xunit.Sdk.XunitException($"{Name} still running after {timeout.TotalSeconds} s:\n{Log}");
        process.WaitForExit();
        return process.ExitCode;
    }

    /// <summary>SIGTERM, as `kill PID` or a service manager's stop: the process may shut down cleanly.</summary>
    public void Terminate()
    {
        if (!process.HasExited && Kill(process.Id, SigTerm) != 0)
            throw new InvalidOperationException($"kill -TERM {process.Id} failed (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
    }

    const int SigTerm = 15;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int Kill(int pid, int signal);

    /// <summary>SIGKILL: no shutdown code of the process runs, as with kill -9.</summary>
    public void Kill()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    public void Dispose()
    {
        Kill();
        process.Dispose();
    }

    /// <summary>src/FedLlm.Cli/bin/{Configuration}/{tfm}/FedLlm.Cli.dll, the configuration and framework of this test build.</summary>
    static string CliDll
    {
        get
        {
            var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            string framework = testBin.Name, configuration = testBin.Parent!.Name;
            var root = testBin;
            while (root is not null && !File.Exists(Path.Combine(root.FullName, "FedLlm.sln"))) root = root.Parent;
            if (root is null) throw new InvalidOperationException($"no FedLlm.sln above {AppContext.BaseDirectory}");
            string dll = Path.Combine(root.FullName, "src", "FedLlm.Cli", "bin", configuration, framework, "FedLlm.Cli.dll");
            if (!File.Exists(dll)) throw new FileNotFoundException($"{dll}: build the CLI first (the test project builds it)", dll);
            return dll;
        }
    }
}
