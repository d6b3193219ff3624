namespace FedLlm.Io;

/// <summary>
/// Replaces a file all at once, so that a crash leaves either the old or the complete new content, never a torn file:
/// write a temporary file beside the target (a rename is only atomic within one file system), flush it to disk, then
/// rename it over the target.
/// </summary>
/// <remarks>
/// The folder itself is not fsynced after the rename (.NET has no API for it), so after a power cut the old file may
/// reappear; it is never a torn mix of both.
/// </remarks>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="contents"/> as UTF-8 without BOM to <paramref name="path"/> atomically: a reader
    /// sees the old file or the new one, never a part.</summary>
    public static void WriteAllText(string path, string contents) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), leaveOpen: true);
            writer.Write(contents);
        });

    /// <summary>Runs <paramref name="writeContents"/> against a temporary file, fsyncs it, and renames it to <paramref name="path"/>.
    /// On failure the temporary file is removed and the target is untouched.</summary>
    public static void Write(string path, Action<FileStream> writeContents)
    {
        string fullPath = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{fullPath}' is a root, not a file path.", nameof(path));
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
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
            try { File.Delete(temporary); }
            catch (IOException) { /* best effort: the original error matters more than a leftover temporary file */ }
            throw;
        }
    }
}
