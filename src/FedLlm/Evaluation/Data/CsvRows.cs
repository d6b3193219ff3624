using System.Text;
using FedLlm.Data;
using FedLlm.Data.Datasets;

namespace FedLlm.Evaluation.Data;

/// <summary>
/// RFC 4180 CSV as pandas reads the benchmark files: comma-separated, fields in double quotes may hold commas,
/// newlines and doubled quotes. MMLU's CSVs have no header; TFNS's have one.
/// </summary>
public static class CsvRows
{
    /// <summary>Rows of fields; each row with its 1-based starting line, for error messages.</summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="encoding">The file's encoding; by default strict UTF-8, where a byte that is not UTF-8 is an error
    /// naming its line and offset rather than a silent U+FFFD in a question.</param>
    /// <exception cref="DataFormatException">The file is empty, is not valid UTF-8, or has an unclosed quote.</exception>
    public static IReadOnlyList<(int Line, IReadOnlyList<string> Fields)> Read(string path, Encoding? encoding = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"benchmark file not found: {path}", path);
        string text = encoding is null ? ReadStrictUtf8(path) : File.ReadAllText(path, encoding);
        var rows = new List<(int, IReadOnlyList<string>)>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, rowStart = 1;
        bool quoted = false, fieldStarted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else { if (c == '\n') line++; field.Append(c); }
                continue;
            }
            switch (c)
            {
                case '"' when field.Length == 0: quoted = true; fieldStarted = true; break;
                case ',': fields.Add(field.ToString()); field.Clear(); fieldStarted = true; break;
                case '\r': break;
                case '\n':
                    if (fieldStarted || field.Length > 0) { fields.Add(field.ToString()); rows.Add((rowStart, fields)); }
                    fields = new List<string>(); field.Clear(); fieldStarted = false; line++; rowStart = line;
                    break;
                default: field.Append(c); fieldStarted = true; break;
            }
        }
        if (quoted) throw new DataFormatException(path, rowStart, null, null, "a quoted field is never closed");
        if (fieldStarted || field.Length > 0) { fields.Add(field.ToString()); rows.Add((rowStart, fields)); }
        if (rows.Count == 0)
            throw new DataFormatException(path, null, null, null, text.Length == 0
                ? "the file is empty (0 bytes): there are no rows to read"
                : "the file holds no rows: it has nothing but blank lines");
        return rows;
    }

    private static string ReadStrictUtf8(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var bad = Utf8Text.FirstInvalidByte(bytes);
        if (bad >= 0)
        {
            var line = bytes.AsSpan(0, bad).Count((byte)'\n') + 1;
            throw new DataFormatException(path, line, null, null, Utf8Text.InvalidProblem(bytes[bad], bad));
        }

        var bom = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        return Encoding.UTF8.GetString(bytes, bom, bytes.Length - bom);
    }
}
