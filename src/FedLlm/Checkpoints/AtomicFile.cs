namespace FedLlm.Checkpoints;

/// <summary>Replaces a file all at once: readers see the old file or the complete new one, never a partial write.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Writes to a temporary file in the target's folder (a rename is only atomic within one file system), flushes it to
    /// disk, then renames it over <paramref name="path"/>. On failure the temporary file is removed and the target is
    /// untouched.
    /// </summary>
    /// <remarks>
    /// The folder itself is not fsynced after the rename (.NET has no API for it), so after a power cut the old file may
    /// reappear; it is never a torn mix of both.
    /// </remarks>
    internal static void Write(string path, Action<FileStream> writeContents)
    {
        var fullPath = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{fullPath}' is a root, not a file path.", nameof(path));
        var temporary = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            // A 1 MiB buffer batches the many small writes of an adapter; writes larger than it bypass the buffer.
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                writeContents(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (IOException)
            {
                // Best effort: the original error matters more than a leftover temporary file.
            }
            throw;
        }
    }
}
