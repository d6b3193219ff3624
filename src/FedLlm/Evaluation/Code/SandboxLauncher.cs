using System.ComponentModel;
using System.Diagnostics;

namespace FedLlm.Evaluation.Code;

/// <summary>
/// Starts interpreters for untrusted programs: inside bubblewrap (<see cref="BubblewrapArguments"/>), or, only when
/// <see cref="SandboxOptions.UnsafeCodeExecution"/> opts out, directly on the host.
/// </summary>
/// <remarks>
/// When FedLlm runs as root, bwrap itself is started as the unprivileged user <see cref="SandboxUserId"/> through
/// <c>setpriv</c>: the kernel never applies RLIMIT_NPROC to the real root user, so a sandbox mapped to root could fork
/// without bound. As any other user the user's own id is kept.
/// </remarks>
internal sealed class SandboxLauncher
{
    /// <summary>The overflow user "nobody": owns no files, so the sandbox can read only what is readable by all.</summary>
    public const int SandboxUserId = 65534;

    private static readonly string[] BubblewrapPaths = ["/usr/bin/bwrap", "/bin/bwrap"];
    private static readonly string[] SetprivPaths = ["/usr/bin/setpriv", "/bin/setpriv"];

    private readonly string? _fileName;
    private readonly IReadOnlyList<string> _prefix;

    private SandboxLauncher(PythonInterpreter interpreter, string? fileName, IReadOnlyList<string> prefix)
    {
        Interpreter = interpreter;
        _fileName = fileName;
        _prefix = prefix;
    }

    public PythonInterpreter Interpreter { get; }

    /// <summary>False only with <see cref="SandboxOptions.UnsafeCodeExecution"/>.</summary>
    public bool IsIsolated => _fileName is not null;

    /// <summary>Finds the interpreter and bubblewrap, and checks once that a sandbox can be created here.</summary>
    /// <exception cref="InvalidOperationException">No interpreter, no bubblewrap, or no user namespace; the message says what to do.</exception>
    public static SandboxLauncher Create(SandboxOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var interpreter = PythonInterpreter.Resolve(options.PythonPath);
        if (options.UnsafeCodeExecution) return new SandboxLauncher(interpreter, null, []);

        var bwrap = BubblewrapPaths.FirstOrDefault(File.Exists) ?? throw new InvalidOperationException(
            "Code evaluation runs model-generated programs and isolates them with bubblewrap, which is not installed " +
            "(no /usr/bin/bwrap). Install Debian's bubblewrap package (apt-get install bubblewrap), or pass " +
            "--unsafe-code-execution to run them without an OS sandbox, only on a machine you can afford to lose: they could " +
            "then read your files and environment, reach the network and start processes.");
        if (!File.Exists(BubblewrapArguments.Prlimit))
            throw new InvalidOperationException($"The code sandbox sets its limits with {BubblewrapArguments.Prlimit}, which is missing; install util-linux.");

        var bwrapArguments = BubblewrapArguments.Build(interpreter, options);
        SandboxLauncher launcher;
        if (Environment.IsPrivilegedProcess)
        {
            var setpriv = SetprivPaths.FirstOrDefault(File.Exists) ?? throw new InvalidOperationException(
                "FedLlm runs as root, so the code sandbox must drop to an unprivileged user with setpriv, which is missing; install util-linux.");
            var id = SandboxUserId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            launcher = new SandboxLauncher(interpreter, setpriv, [$"--reuid={id}", $"--regid={id}", "--clear-groups", "--no-new-privs", "--", bwrap, .. bwrapArguments]);
        }
        else
        {
            launcher = new SandboxLauncher(interpreter, bwrap, bwrapArguments);
        }

        launcher.Probe();
        return launcher;
    }

    /// <summary>A start description for the interpreter with <paramref name="pythonArguments"/>, all streams redirected.</summary>
    public ProcessStartInfo StartInfo(IEnumerable<string> pythonArguments)
    {
        var start = new ProcessStartInfo(_fileName ?? Interpreter.Executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = System.Text.Encoding.UTF8,
            StandardErrorEncoding = System.Text.Encoding.UTF8,
        };
        foreach (var arg in _prefix) start.ArgumentList.Add(arg);
        foreach (var arg in pythonArguments) start.ArgumentList.Add(arg);
        // Not even the launcher sees FedLlm's environment (API keys): its /proc/PID/environ is readable by its user.
        start.Environment.Clear();
        start.Environment["PATH"] = "/usr/bin:/bin";
        start.Environment["LANG"] = "C.UTF-8";
        start.Environment["OMP_NUM_THREADS"] = "1";
        return start;
    }

    /// <summary>What to tell the user when a trivial program fails in the sandbox, from bwrap's or python's stderr.</summary>
    public static string ExplainProbeFailure(string interpreter, int exitCode, string stderr)
    {
        var said = stderr.Trim();
        if (said.Contains("namespace", StringComparison.OrdinalIgnoreCase) || said.Contains("uid map", StringComparison.OrdinalIgnoreCase))
            return "The code sandbox (bubblewrap) could not create a user namespace: " + said + " " +
                   "The kernel or container must allow unprivileged user namespaces: check the sysctls user.max_user_namespaces (> 0), " +
                   "kernel.unprivileged_userns_clone (1, Debian) and kernel.apparmor_restrict_unprivileged_userns (0, Ubuntu), and the " +
                   "container's seccomp profile. Or pass --unsafe-code-execution to run the programs without an OS sandbox.";
        return $"A trivial program failed in the code sandbox (exit code {exitCode}) with {interpreter}: {said} " +
               $"The sandbox runs as an unprivileged user and shows only /usr and the interpreter's prefix, read-only: give an " +
               $"interpreter that all users can read (--param python=PATH, e.g. {PythonInterpreter.SystemPython}), or pass --unsafe-code-execution.";
    }

    private void Probe()
    {
        var start = StartInfo(["-I", "-c", "print('ok')"]);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}.");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"Could not start the code sandbox ({start.FileName}): {e.Message}", e);
        }

        using (process)
        {
            process.StandardInput.Close();
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                throw new InvalidOperationException("The code sandbox did not run a trivial program within 60 s.");
            }

            process.WaitForExit();
            if (process.ExitCode != 0 || output.Result.Trim() != "ok")
                throw new InvalidOperationException(ExplainProbeFailure(Interpreter.Executable, process.ExitCode, errors.Result));
        }
    }
}
