using System.ComponentModel;
using System.Diagnostics;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace FedLlm.Evaluation.Code;

/// <summary>
/// Runs untrusted Python programs (model completions plus their tests), each in its own <c>python3</c> process, never
/// inside FedLlm's: a fresh temporary directory as the working directory, isolated mode (<c>-I</c>: no user site,
/// no PYTHON* variables), a minimal environment, resource limits set by the child on itself before the program
/// runs (sandbox_guard.py), and a wall-clock timeout after which the whole process tree is killed.
/// </summary>
/// <remarks>
/// <para>This follows human-eval's <c>reliability_guard</c> and is, like it, a guard against accidents, not a security
/// boundary: a program can still read files and reach the network. Run benchmarks of unknown code in a container.</para>
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
    private readonly Lazy<string> _interpreter;

    public PythonSandbox(SandboxOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _interpreter = new Lazy<string>(ResolveInterpreter, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public SandboxOptions Options => _options;

    /// <summary>The interpreter's real path (sys.executable), found once; PATH shims such as pyenv's need an environment the sandbox does not give.</summary>
    /// <exception cref="InvalidOperationException">No working interpreter.</exception>
    public string Interpreter => _interpreter.Value;

    /// <summary>Runs each program, <see cref="SandboxOptions.Workers"/> at a time; results are in the programs' order.</summary>
    /// <param name="programs">Complete programs.</param>
    /// <param name="completed">Called after each program with the number done so far (from worker threads).</param>
    /// <param name="cancellationToken">Stops starting new programs; running ones finish or time out.</param>
    public IReadOnlyList<ExecutionResult> RunAll(IReadOnlyList<string> programs, Action<int>? completed = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(programs);
        _ = Interpreter; // fail once, clearly, before starting workers
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
    /// <exception cref="InvalidOperationException">The interpreter cannot be started.</exception>
    public ExecutionResult Run(string program)
    {
        ArgumentNullException.ThrowIfNull(program);
        var interpreter = Interpreter;
        var directory = Directory.CreateTempSubdirectory("fedllm-exec-");
        try
        {
            File.WriteAllText(Path.Combine(directory.FullName, "program.py"), program, Utf8NoBom);
            File.WriteAllText(Path.Combine(directory.FullName, "sandbox_guard.py"), GuardSource.Value, Utf8NoBom);
            var token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
            var start = new ProcessStartInfo(interpreter)
            {
                WorkingDirectory = directory.FullName,
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                StandardOutputEncoding = Encoding.UTF8,
                StandardErrorEncoding = Encoding.UTF8,
            };
            foreach (var arg in new[] { "-I", "-B", "sandbox_guard.py", "program.py" }) start.ArgumentList.Add(arg);
            start.ArgumentList.Add(_options.MemoryMegabytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
            // CPU seconds: the wall clock is the real limit; this catches a process that somehow outlives the kill.
            start.ArgumentList.Add(((int)Math.Ceiling(_options.Timeout.TotalSeconds) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
            start.ArgumentList.Add(_options.MaxFileMegabytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
            start.Environment.Clear();
            start.Environment["PATH"] = "/usr/bin:/bin";
            start.Environment["HOME"] = directory.FullName;
            start.Environment["TMPDIR"] = directory.FullName;
            start.Environment["LANG"] = "C.UTF-8";
            start.Environment["OMP_NUM_THREADS"] = "1";
            start.Environment["FEDLLM_PASS_TOKEN"] = token;

            var clock = Stopwatch.StartNew();
            using var process = StartProcess(start, interpreter);
            process.StandardInput.Close();
            var stdout = ReadTailAsync(process.StandardOutput, StdoutTailChars);
            var stderr = ReadTailAsync(process.StandardError, StderrTailChars);
            var exited = process.WaitForExit(_options.Timeout);
            if (!exited)
            {
                try
                {
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
            // Readers end when the pipes close; a grandchild holding them open is not worth waiting for.
            Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(2));
            var errorTail = stderr.IsCompletedSuccessfully ? stderr.Result : "";
            var outputTail = stdout.IsCompletedSuccessfully ? stdout.Result : "";
            return new ExecutionResult(Classify(exited, process.ExitCode, outputTail, token), errorTail, elapsed);
        }
        finally
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
    }

    private static ExecutionStatus Classify(bool exited, int exitCode, string stdoutTail, string token)
    {
        const int SigXcpu = 24; // RLIMIT_CPU exceeded: the CPU-time form of a timeout
        if (!exited || exitCode == 128 + SigXcpu) return ExecutionStatus.TimedOut;
        return exitCode switch
        {
            0 when stdoutTail.TrimEnd().EndsWith(token, StringComparison.Ordinal) => ExecutionStatus.Passed,
            0 or 1 => ExecutionStatus.Failed, // 0 without the token: the program ended the process before its tests did
            _ => ExecutionStatus.Error,
        };
    }

    private static Process StartProcess(ProcessStartInfo start, string interpreter)
    {
        try
        {
            return Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{interpreter}'.");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"Could not start the Python interpreter '{interpreter}': {e.Message}", e);
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

    private string ResolveInterpreter()
    {
        var requested = _options.PythonPath ?? "python3";
        var start = new ProcessStartInfo(requested)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "-I", "-c", "import sys; print(sys.executable)" }) start.ArgumentList.Add(arg);
        var where = _options.PythonPath is null ? "python3 on PATH" : $"'{requested}' (python parameter)";
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
            var path = output.Result.Trim();
            if (process.ExitCode != 0 || path.Length == 0 || !File.Exists(path))
                throw new InvalidOperationException($"{where} is not a working Python 3 interpreter (exit code {process.ExitCode}): {errors.Result.Trim()}");
            return path;
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
