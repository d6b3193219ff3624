using System.Globalization;

namespace FedLlm.Federation.Transfer;

/// <summary>How adapter tensors travel; parsed from config strings like "fp32", "bf16", "fp16", "int8", each optionally "+gzip".</summary>
/// <param name="Precision">The number format on the wire.</param>
/// <param name="Gzip">Whether the encoded bytes are gzip-compressed as well (worth it for fp32 of sparse or low-entropy
/// updates; random-looking mantissas barely compress).</param>
/// <param name="BlockSize">Elements per absmax block for <see cref="TransferPrecision.Int8Blockwise"/>; ignored otherwise.
/// Written "int8:256" in config strings when not the default 4096.</param>
public sealed record TransferEncoding(TransferPrecision Precision = TransferPrecision.Float32, bool Gzip = false, int BlockSize = 4096)
{
    /// <summary>Elements per absmax block of int8 when the config does not say (4096).</summary>
    public const int DefaultBlockSize = 4096;

    /// <summary>Lossless and uncompressed: what travels when the config says nothing.</summary>
    public static readonly TransferEncoding Default = new();

    /// <summary>Elements per absmax block for <see cref="TransferPrecision.Int8Blockwise"/> (at least 1); ignored
    /// otherwise.</summary>
    public int BlockSize { get; init; } = BlockSize > 0
        ? BlockSize
        : throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "the int8 block size must be at least 1 element");

    /// <summary>Parses "fp32", "bf16", "fp16", "int8" or "int8:BLOCK", each optionally followed by "+gzip" (case-insensitive;
    /// "float32", "bfloat16", "float16" are accepted too).</summary>
    /// <exception cref="FormatException">The text names no known precision or option; the message lists the accepted forms.</exception>
    public static TransferEncoding Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        const string accepted = "expected fp32, bf16, fp16, int8 or int8:BLOCK, optionally followed by +gzip (e.g. \"bf16+gzip\")";
        var parts = text.Trim().ToLowerInvariant().Split('+');
        bool gzip = false;
        foreach (var option in parts.Skip(1))
        {
            if (option != "gzip" || gzip)
                throw new FormatException($"transfer encoding '{text}': unknown or repeated option '+{option}'; {accepted}");
            gzip = true;
        }
        var (name, block) = SplitBlock(parts[0], text, accepted);
        var precision = name switch
        {
            "fp32" or "float32" => TransferPrecision.Float32,
            "bf16" or "bfloat16" => TransferPrecision.BFloat16,
            "fp16" or "float16" or "half" => TransferPrecision.Float16,
            "int8" => TransferPrecision.Int8Blockwise,
            _ => throw new FormatException($"transfer encoding '{text}': unknown precision '{name}'; {accepted}"),
        };
        if (block is not null && precision != TransferPrecision.Int8Blockwise)
            throw new FormatException($"transfer encoding '{text}': a block size applies only to int8; {accepted}");
        return new TransferEncoding(precision, gzip, block ?? DefaultBlockSize);
    }

    /// <summary>The config string <see cref="Parse"/> reads back to an equal encoding.</summary>
    public override string ToString()
    {
        string name = Precision switch
        {
            TransferPrecision.Float32 => "fp32",
            TransferPrecision.BFloat16 => "bf16",
            TransferPrecision.Float16 => "fp16",
            TransferPrecision.Int8Blockwise => BlockSize == DefaultBlockSize ? "int8" : string.Create(CultureInfo.InvariantCulture, $"int8:{BlockSize}"),
            _ => throw new InvalidOperationException($"unknown precision {Precision}"),
        };
        return Gzip ? name + "+gzip" : name;
    }

    private static (string Name, int? Block) SplitBlock(string head, string text, string accepted)
    {
        int colon = head.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0) return (head, null);
        var blockText = head[(colon + 1)..];
        if (!int.TryParse(blockText, NumberStyles.None, CultureInfo.InvariantCulture, out int block) || block < 1)
            throw new FormatException($"transfer encoding '{text}': block size '{blockText}' is not a whole number ≥ 1; {accepted}");
        return (head[..colon], block);
    }
}
