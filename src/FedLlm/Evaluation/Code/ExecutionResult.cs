namespace FedLlm.Evaluation.Code;

/// <summary>How a program's run ended; only <see cref="Passed"/> counts as correct.</summary>
public enum ExecutionStatus
{
    /// <summary>Ran to the end without an exception: every test assertion held.</summary>
    Passed,

    /// <summary>Raised an exception (a failed assertion, a syntax error, MemoryError…) or ended before its tests finished.</summary>
    Failed,

    /// <summary>Exceeded the wall-clock timeout (or its CPU-time limit) and was killed with its process tree.</summary>
    TimedOut,

    /// <summary>The interpreter ended in a way the wrapper does not report (killed by a signal, an unexpected exit code).</summary>
    Error,
}

/// <summary>The outcome of one sandboxed run.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="StderrTail">The last few thousand characters of stderr (the traceback of a failure).</param>
/// <param name="Elapsed">Wall-clock time from start to exit (or to the kill).</param>
public sealed record ExecutionResult(ExecutionStatus Status, string StderrTail, TimeSpan Elapsed);
