using System.Text;
using FedLlm.Data;

namespace FedLlm.Evaluation.Data;

/// <summary>
/// RFC 4180 CSV as pandas reads the benchmark files: comma-separated, fields in double quotes may hold commas,
/// newlines and doubled quotes. MMLU's CSVs have no header; TFNS's have one.
/// </summary>
public static class CsvRows
{
    /// <summary>Rows of fields; each row with its 1-based starting line, for error messages.</summary>
    public static IReadOnlyList<(int Line, IReadOnlyList<string> Fields)> Read(string path, Encoding? encoding = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"benchmark file not found: {path}", path);
        string text = File.ReadAllText(path, encoding ?? Encoding.UTF8);
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
        return rows;
    }
}
