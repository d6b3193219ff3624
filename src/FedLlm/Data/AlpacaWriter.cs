using System.Text.Encodings.Web;
using System.Text.Json;

namespace FedLlm.Data;

/// <summary>Writes Alpaca-schema JSON Lines files that <see cref="AlpacaReader"/> and Hugging Face <c>datasets</c> read.</summary>
public static class AlpacaWriter
{
    // Relaxed escaping keeps apostrophes and non-ASCII readable; the files are data, never embedded in HTML.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Writes one object per line with keys in the order instruction, input, output, "\n" line ends, UTF-8 without BOM.
    /// </summary>
    /// <remarks>The fixed key order and line ends make the bytes a function of the records alone, so files can be hashed.</remarks>
    /// <param name="path">Destination; overwritten if it exists.</param>
    /// <param name="records">The rows in order.</param>
    public static void WriteJsonl(string path, IEnumerable<AlpacaRecord> records)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(records);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        var line = new MemoryStream();
        foreach (var record in records)
        {
            line.SetLength(0);
            using (var writer = new Utf8JsonWriter(line, WriterOptions))
            {
                writer.WriteStartObject();
                writer.WriteString("instruction", record.Instruction);
                writer.WriteString("input", record.Input);
                writer.WriteString("output", record.Output);
                writer.WriteEndObject();
            }

            line.WriteByte((byte)'\n');
            file.Write(line.GetBuffer(), 0, (int)line.Length);
        }
    }
}
