using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace FedLlm.Network.Transfer;

/// <summary>
/// The one place the transport turns a tensor into bytes and back. Until the library's TensorCodec (bf16/fp16/int8,
/// gzip) is merged this speaks only "fp32": the raw little-endian float32 values.
/// </summary>
public static class WireCodec
{
    public const string Fp32 = "fp32";

    /// <summary>Throws with the supported names when <paramref name="encoding"/> is unknown.</summary>
    public static string Normalize(string encoding)
    {
        string name = encoding.Trim().ToLowerInvariant();
        if (name != Fp32) throw new ArgumentException($"transfer encoding '{encoding}' is not supported; use {Fp32}");
        return name;
    }

    public static byte[] Encode(Tensor tensor, string encoding)
    {
        Normalize(encoding);
        using var flat = tensor.detach().to(ScalarType.Float32).contiguous().cpu();
        return MemoryMarshal.AsBytes(flat.data<float>().ToArray().AsSpan()).ToArray();
    }

    public static Tensor Decode(ReadOnlySpan<byte> data, string encoding, long[] shape)
    {
        Normalize(encoding);
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (data.Length != count * sizeof(float))
            throw new InvalidDataException($"fp32 tensor of shape [{string.Join(", ", shape)}] needs {count * sizeof(float)} bytes, got {data.Length}");
        var values = MemoryMarshal.Cast<byte, float>(data).ToArray();
        return tensor(values, shape);
    }
}
