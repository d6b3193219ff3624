namespace FedLlm.Checkpoints;

/// <summary>
/// A checkpoint file or folder is missing, malformed, or does not hold what the caller asked for.
/// </summary>
/// <remarks>
/// Every message names the file (or folder) and, where one is involved, the tensor, because a failed load of a
/// 30-shard model is otherwise impossible to trace without a debugger.
/// </remarks>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception with a message that names the file and tensor involved.</summary>
    public CheckpointException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the lower-level error (I/O, JSON) that caused it.</summary>
    public CheckpointException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
