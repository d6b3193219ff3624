using System.Diagnostics;
using System.Text.Json;

namespace FedLlm.Bench;

/// <summary>Runs this benchmark binary again with other arguments and reads the JSON line it prints: one process per measurement, so peak RSS is its own.</summary>
public static class ChildProcess
{
    public static T Run<T>(IEnumerable<string> arguments, TextWriter log, IReadOnlyDictionary<string, string>? environment = null) =>
        Run<T>(Environment.ProcessPath!, arguments, log, environment);

    /// <summary>Runs <paramref name="executable"/> (another build of this benchmark, e.g. the parent commit's) instead.</summary>
    public static T Run<T>(string executable, IEnumerable<string> arguments, TextWriter log, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.WriteLine(e.Data); };
        process.BeginErrorReadLine();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"benchmark child '{string.Join(' ', start.ArgumentList)}' exited with code {process.ExitCode}: {stdout}");
        string json = stdout.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'))
            ?? throw new InvalidDataException($"benchmark child printed no JSON line; stdout was: {stdout}");
        return JsonSerializer.Deserialize<T>(json) ?? throw new InvalidDataException($"benchmark child printed 'null': {json}");
    }
}
