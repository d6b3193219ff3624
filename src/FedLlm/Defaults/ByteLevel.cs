using System.Text;
using System.Text.RegularExpressions;

namespace FedLlm.Defaults;

/// <summary>
/// GPT-2's byte-level pre-tokenization, as Hugging Face's <c>ByteLevel</c> pre-tokenizer does it with
/// <c>use_regex: true, add_prefix_space: false</c>: split with the GPT-2 regex, then spell each piece's UTF-8 bytes
/// with one printable character per byte.
/// </summary>
/// <remarks>
/// The byte-to-character map is GPT-2's <c>bytes_to_unicode</c>: printable Latin-1 bytes stand for themselves and the
/// other 68 bytes map to U+0100 upwards (so a space is "Ġ"). Every string thus becomes a sequence of 256 symbols and
/// no text is ever out of vocabulary. .NET's regex works on UTF-16, so a letter outside the Basic Multilingual Plane
/// is not <c>\p{L}</c> here as it is in Rust; such text still round-trips, only its split may differ.
/// </remarks>
internal static partial class ByteLevel
{
    /// <summary>The GPT-2 split pattern, verbatim from the tokenizers crate's ByteLevel pre-tokenizer.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);

    [GeneratedRegex(Gpt2Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex Gpt2Split();

    /// <summary>The character standing for byte <paramref name="b"/>.</summary>
    public static char CharFor(byte b) => ByteToChar[b];

    /// <summary>Splits text into pre-tokens, each spelt in byte characters.</summary>
    public static List<string> PreTokenize(string text)
    {
        var pieces = new List<string>();
        foreach (var match in Gpt2Split().EnumerateMatches(text))
            pieces.Add(ToByteChars(text.AsSpan(match.Index, match.Length)));
        return pieces;
    }

    /// <summary>Spells the UTF-8 bytes of <paramref name="text"/> in byte characters.</summary>
    public static string ToByteChars(ReadOnlySpan<char> text)
    {
        var bytes = Encoding.UTF8.GetBytes(text.ToArray());
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>Appends the bytes spelt by <paramref name="token"/>, a model token made of byte characters only.</summary>
    public static void AppendBytes(string token, List<byte> bytes)
    {
        foreach (var c in token)
        {
            if (!CharToByte.TryGetValue(c, out var b))
                throw new InvalidOperationException($"Token '{token}' holds U+{(int)c:X4}, which spells no byte.");
            bytes.Add(b);
        }
    }

    private static char[] BuildByteToChar()
    {
        // GPT-2 bytes_to_unicode: keep '!'..'~', '¡'..'¬', '®'..'ÿ'; give the rest 256, 257, ... in byte order.
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }

        return map;
    }
}
