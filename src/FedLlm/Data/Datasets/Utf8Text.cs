using System.Text;
using System.Text.Unicode;

namespace FedLlm.Data.Datasets;

/// <summary>Strict UTF-8 checks: data files must be UTF-8, and a bad byte is an error, never a silent U+FFFD.</summary>
internal static class Utf8Text
{
    /// <summary>The index of the first byte that is not valid UTF-8, or -1 when all are valid.</summary>
    public static int FirstInvalidByte(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes)) return -1;
        var i = 0;
        while (i < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[i..], out _, out var consumed) != System.Buffers.OperationStatus.Done) return i;
            i += consumed;
        }

        return -1;
    }

    /// <summary>The problem text for an invalid byte, naming its value and its offset in the file.</summary>
    public static string InvalidProblem(byte value, long fileOffset) =>
        $"invalid UTF-8 (byte 0x{value:X2} at byte offset {fileOffset:N0}); the file must be UTF-8 encoded";
}
