namespace FedLlm.Io;

/// <summary>
/// One process at a time writes a run directory: a federated run (simulated or served) holds an exclusive lock on
/// <see cref="FileName"/> in its output from before its first write to its end, and a network client on its state_dir.
/// A second process pointed at the same directory — a server restarted while the old one still runs, two simulations
/// with one --output, a client started twice — is refused before it writes anything, instead of interleaving its
/// rounds, states and metrics with the first one's. The lock is the
/// operating system's (flock on Unix), so a process that dies, even by kill -9, releases it, and resuming works.
/// </summary>
public sealed class RunDirectoryLock : IDisposable
{
    /// <summary>The lock file's name in the run directory.</summary>
    public const string FileName = ".fedllm-run.lock";

    // What .NET reports for a lock another process holds: errno EWOULDBLOCK from flock on Unix, a sharing violation on
    // Windows. Any other failure (no space, a read-only disk) surfaces as itself.
    const int WouldBlock = 11;
    const int SharingViolation = unchecked((int)0x80070020);

    readonly FileStream stream;

    RunDirectoryLock(FileStream stream) => this.stream = stream;

    /// <summary>Locks <paramref name="directory"/> (creating it) for this process until disposed.</summary>
    /// <exception cref="IOException">Another process holds it; the message names the directory and the file with that
    /// process's id.</exception>
    public static RunDirectoryLock Acquire(string directory)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, FileName);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e.HResult is WouldBlock or SharingViolation)
        {
            throw new IOException($"{Path.GetFullPath(directory)} is in use by another FedLlm process (its id is in {path}): two processes writing " +
                "one directory would mix their rounds and state. Stop that process first (a stopped or killed run resumes from its last commit), or choose another directory", e);
        }
        try
        {
            // Who holds it, for an operator (`cat` reads it; .NET's own readers would ask for the lock).
            stream.SetLength(0);
            var text = System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n");
            stream.Write(text);
            stream.Flush();
        }
        catch (IOException)
        {
            // The id is only for the message; the lock is what counts.
        }
        return new RunDirectoryLock(stream);
    }

    /// <summary>Releases the lock (the file stays; the next run takes it again).</summary>
    public void Dispose() => stream.Dispose();
}
