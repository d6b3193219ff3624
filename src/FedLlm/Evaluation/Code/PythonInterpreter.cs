using System.ComponentModel;
using System.Diagnostics;

namespace FedLlm.Evaluation.Code;

/// <summary>A Python 3 interpreter as the sandbox needs to know it: its real path and the folders it loads from.</summary>
/// <param name="Executable">sys.executable: the real interpreter, not a PATH shim such as pyenv's, which needs an environment the sandbox does not give.</param>
/// <param name="Prefixes">sys.base_prefix and sys.prefix (different in a virtual environment): the standard library and site-packages live under them.</param>
internal sealed record PythonInterpreter(string Executable, IReadOnlyList<string> Prefixes)
{
    /// <summary>Debian's interpreter, preferred when no path is given: it lives under /usr, which the sandbox already shows.</summary>
    public const string SystemPython = "/usr/bin/python3";

    /// <summary>Asks <paramref name="requested"/> (default: <see cref="SystemPython"/> if present, else python3 on PATH) where it lives.</summary>
    /// <exception cref="InvalidOperationException">No working interpreter; the message says how to give one.</exception>
    public static PythonInterpreter Resolve(string? requested)
    {
        var command = requested ?? (File.Exists(SystemPython) ? SystemPython : "python3");
        var where = requested is not null ? $"'{requested}' (python parameter)" : command == SystemPython ? SystemPython : "python3 on PATH";
        var start = new ProcessStartInfo(command)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "-I", "-c", "import sys; print(sys.executable); print(sys.base_prefix); print(sys.prefix)" }) start.ArgumentList.Add(arg);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {where}.");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException(
                $"Code evaluation needs a Python 3 interpreter, but {where} could not be started ({e.Message}). Install python3 or pass --param python=PATH.", e);
        }

        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                throw new InvalidOperationException($"{where} did not answer within 60 s.");
            }

            process.WaitForExit();
            var lines = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (process.ExitCode != 0 || lines.Length != 3 || !File.Exists(lines[0]))
                throw new InvalidOperationException($"{where} is not a working Python 3 interpreter (exit code {process.ExitCode}): {errors.Result.Trim()}");
            return new PythonInterpreter(lines[0], lines[1..].Distinct(StringComparer.Ordinal).ToList());
        }
    }
}
