namespace FedLlm.Evaluation.Code;

/// <summary>Where and under which limits untrusted programs run; see <see cref="PythonSandbox"/>.</summary>
public sealed record SandboxOptions
{
    /// <summary>The interpreter; null = Debian's <c>/usr/bin/python3</c> if present, else <c>python3</c> found on PATH.</summary>
    public string? PythonPath { get; init; }

    /// <summary>Wall-clock limit per program, interpreter start-up included (human-eval's default is 3 s).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Address-space limit (RLIMIT_AS and RLIMIT_DATA) of the program's process.</summary>
    public int MemoryMegabytes { get; init; } = 1024;

    /// <summary>Largest file the program may write (RLIMIT_FSIZE), and the size of the sandbox's writable /tmp, all files together.</summary>
    public int MaxFileMegabytes { get; init; } = 16;

    /// <summary>Programs run at the same time.</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Runs programs without the OS sandbox, directly on the host with only sandbox_guard.py's in-process checks, when
    /// bubblewrap is not available. Like Hugging Face's HF_ALLOW_CODE_EVAL, an explicit opt-out
    /// (<c>fedllm eval --unsafe-code-execution</c>): the programs can then read files and the environment, reach the
    /// network and start processes as the user running FedLlm.
    /// </summary>
    public bool UnsafeCodeExecution { get; init; }

    /// <exception cref="ArgumentOutOfRangeException">A limit is not positive.</exception>
    public void Validate()
    {
        if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "must be positive");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MemoryMegabytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxFileMegabytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Workers);
    }
}
