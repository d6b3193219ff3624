using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace FedLlm.Evaluation.Code;

/// <summary>
/// Runs untrusted Python programs (model completions plus their tests), each in its own interpreter inside an OS
/// sandbox (bubblewrap: <see cref="BubblewrapArguments"/>), never inside FedLlm's process, with a wall-clock timeout
/// after which the sandbox and everything in it is killed.
/// </summary>
/// <remarks>
/// <para>The sandbox is the security boundary: a program sees no network, no host files but a read-only /usr, no
/// other process (FedLlm's environment included), runs as an unprivileged user with at most one process, and leaves
/// nothing running behind. Inside it, sandbox_guard.py reports the verdict: a pass is the token it writes when the
/// tests ran to the end, which a program can forge only with effort and only for its own score. docs/code-sandbox.md
/// states the threat model. With <see cref="SandboxOptions.UnsafeCodeExecution"/> the guard runs alone, directly on
/// the host: that is no boundary at all.</para>
/// <para>Thread-safe: <see cref="Run"/> may be called concurrently; <see cref="RunAll"/> does so with
/// <see cref="SandboxOptions.Workers"/> programs at a time.</para>
/// </remarks>
public sealed class PythonSandbox
{
    private const int StderrTailChars = 4000;
    private const int StdoutTailChars = 200;
    private static readonly Lazy<string> GuardSource = new(LoadGuardSource);
    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false); // a BOM is a syntax error to python

    private readonly SandboxOptions _options;
    private readonly Lazy<SandboxLauncher> _launcher;

    /// <summary>A sandbox with <paramref name="options"/> (validated here); the interpreter and bubblewrap are looked
    /// up on first use.</summary>
    public PythonSandbox(SandboxOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _launcher = new Lazy<SandboxLauncher>(() => SandboxLauncher.Create(options), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The limits and paths programs run under.</summary>
    public SandboxOptions Options => _options;

    /// <summary>The interpreter's real path (sys.executable), found once; PATH shims such as pyenv's need an environment the sandbox does not give.</summary>
    /// <exception cref="InvalidOperationException">No working interpreter, or no sandbox can be created (bubblewrap missing, no user namespaces).</exception>
    public string Interpreter => Launcher.Interpreter.Executable;

    internal SandboxLauncher Launcher => _launcher.Value;

    /// <summary>Runs each program, <see cref="SandboxOptions.Workers"/> at a time; results are in the programs' order.</summary>
    /// <param name="programs">Complete programs.</param>
    /// <param name="completed">Called after each program with the number done so far (from worker threads).</param>
    /// <param name="cancellationToken">Stops starting new programs; running ones finish or time out.</param>
    public IReadOnlyList<ExecutionResult> RunAll(IReadOnlyList<string> programs, Action<int>? completed = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(programs);
        _ = Launcher; // fail once, clearly, before starting workers
        var results = new ExecutionResult[programs.Count];
        var done = 0;
        try
        {
            Parallel.For(0, programs.Count, new ParallelOptions { MaxDegreeOfParallelism = _options.Workers, CancellationToken = cancellationToken }, i =>
            {
                results[i] = Run(programs[i]);
                completed?.Invoke(Interlocked.Increment(ref done));
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
        {
            // Surface the first real error (e.g. the interpreter vanished), not "one or more errors occurred".
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }

        return results;
    }

    /// <summary>Runs one program to completion or timeout.</summary>
    /// <exception cref="InvalidOperationException">The interpreter or the sandbox cannot be started.</exception>
    public ExecutionResult Run(string program)
    {
        ArgumentNullException.ThrowIfNull(program);
        var launcher = Launcher;
        var token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        var start = launcher.StartInfo([
            "-I", "-B", "-c", GuardSource.Value,
            _options.MemoryMegabytes.ToString(CultureInfo.InvariantCulture),
            BubblewrapArguments.CpuSeconds(_options).ToString(CultureInfo.InvariantCulture),
            _options.MaxFileMegabytes.ToString(CultureInfo.InvariantCulture),
        ]);
        // Without the sandbox, the old per-run folder: the program's files land there and are deleted after.
        var hostDirectory = launcher.IsIsolated ? null : Directory.CreateTempSubdirectory("fedllm-exec-");
        if (hostDirectory is not null)
        {
            start.WorkingDirectory = hostDirectory.FullName;
            start.Environment["HOME"] = hostDirectory.FullName;
            start.Environment["TMPDIR"] = hostDirectory.FullName;
        }

        try
        {
            return Execute(start, token, program);
        }
        finally
        {
            if (hostDirectory is not null) TryDelete(hostDirectory);
        }
    }

    private ExecutionResult Execute(ProcessStartInfo start, string token, string program)
    {
        var clock = Stopwatch.StartNew();
        using var process = StartProcess(start);
        var stdout = ReadTailAsync(process.StandardOutput, StdoutTailChars);
        var stderr = ReadTailAsync(process.StandardError, StderrTailChars);
        // Token and program go through stdin, never a file or the environment; written off this thread, as a sandbox
        // that fails to start never reads them.
        var writer = WriteInputAsync(process.StandardInput, token + "\n" + program);
        var exited = process.WaitForExit(_options.Timeout);
        if (!exited)
        {
            try
            {
                // bwrap and its init die with this; the kernel then kills whatever else is in the PID namespace.
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited between the wait and the kill.
            }

            process.WaitForExit();
        }
        else
        {
            process.WaitForExit(); // lets the redirected streams reach their end
        }

        var elapsed = clock.Elapsed;
        Task.WaitAll([stdout, stderr, writer], TimeSpan.FromSeconds(2));
        var errorTail = stderr.IsCompletedSuccessfully ? stderr.Result : "";
        var outputTail = stdout.IsCompletedSuccessfully ? stdout.Result : "";
        return new ExecutionResult(Classify(exited, process.ExitCode, outputTail, errorTail, token), errorTail, elapsed);
    }

    internal static ExecutionStatus Classify(bool exited, int exitCode, string stdout, string stderr, string token)
    {
        const int SigXcpu = 24; // RLIMIT_CPU exceeded: the CPU-time form of a timeout
        if (!exited || exitCode == 128 + SigXcpu) return ExecutionStatus.TimedOut;
        // bwrap reports its own set-up failures with exit code 1 too; they are not the program's failures.
        if (stderr.StartsWith("bwrap: ", StringComparison.Ordinal)) return ExecutionStatus.Error;
        return exitCode switch
        {
            // Exactly the token: anything else the program wrote on the verdict channel voids the pass.
            0 when stdout == token + "\n" => ExecutionStatus.Passed,
            0 or 1 => ExecutionStatus.Failed, // 0 without the token: the program ended the process before its tests did
            _ => ExecutionStatus.Error,
        };
    }

    private static Process StartProcess(ProcessStartInfo start)
    {
        try
        {
            return Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{start.FileName}'.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not start the code sandbox '{start.FileName}': {e.Message}", e);
        }
    }

    private static async Task WriteInputAsync(StreamWriter stdin, string input)
    {
        try
        {
            await stdin.BaseStream.WriteAsync(Utf8NoBom.GetBytes(input)).ConfigureAwait(false);
            stdin.Close();
        }
        catch (IOException)
        {
            // The process ended before reading everything (a set-up failure or a kill); its exit status tells.
        }
    }

    private static async Task<string> ReadTailAsync(StreamReader reader, int maxChars)
    {
        var buffer = new char[4096];
        var tail = new StringBuilder();
        int read;
        while ((read = await reader.ReadAsync(buffer.AsMemory()).ConfigureAwait(false)) > 0)
        {
            tail.Append(buffer, 0, read);
            if (tail.Length > 2 * maxChars) tail.Remove(0, tail.Length - maxChars);
        }

        if (tail.Length > maxChars) tail.Remove(0, tail.Length - maxChars);
        return tail.ToString();
    }

    private static void TryDelete(DirectoryInfo directory)
    {
        try
        {
            directory.Delete(recursive: true);
        }
        catch (IOException)
        {
            // Left for the OS to clean: a program's stray file must not fail the evaluation.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string LoadGuardSource()
    {
        const string Name = "FedLlm.Evaluation.Code.sandbox_guard.py";
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(Name)
            ?? throw new InvalidOperationException($"Embedded resource {Name} is missing from the FedLlm assembly.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
