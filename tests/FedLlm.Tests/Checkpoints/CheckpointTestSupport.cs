using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

/// <summary>A fresh folder under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "fedllm-checkpoints-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            Directory.Delete(Path, recursive: true);
        }
    }
}

internal static class CheckpointTestSupport
{
    /// <summary>A safetensors file built byte by byte: length prefix, header text as given (no padding added), data.</summary>
    public static byte[] HandBuilt(string headerJson, ReadOnlySpan<byte> data)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes.AsSpan(8 + header.Length));
        return bytes;
    }

    public static byte[] Float32Bytes(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }
        return bytes;
    }

    /// <summary>A copy of a contiguous CPU tensor's raw bytes.</summary>
    public static byte[] RawBytes(Tensor tensor) => tensor.bytes.ToArray();

    /// <summary>A CPU tensor of the given type filled with seeded random bits (0/1 bytes for bool).</summary>
    public static Tensor RandomBits(ScalarType dtype, long[] shape, int seed)
    {
        var tensor = empty(shape, dtype, CPU);
        var bytes = new byte[tensor.numel() * tensor.element_size()];
        new Random(seed).NextBytes(bytes);
        if (dtype == ScalarType.Bool)
        {
            for (int i = 0; i < bytes.Length; i++)
            {
                bytes[i] &= 1;
            }
        }
        tensor.bytes = bytes;
        return tensor;
    }

    /// <summary>Seeded normal-ish floats, so conversions see a spread of exponents and signs.</summary>
    public static Tensor RandomFloats(long[] shape, int seed, ScalarType dtype = ScalarType.Float32)
    {
        var random = new Random(seed);
        var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (long i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-4, 4))); // within F16's range
        }
        using var f32 = tensor(values, shape);
        return f32.to_type(dtype, copy: true);
    }

    /// <summary>The elements as an array; TorchSharp's accessor throws on a tensor with no elements.</summary>
    public static T[] Values<T>(Tensor tensor) where T : unmanaged => tensor.numel() == 0 ? [] : tensor.data<T>().ToArray();

    public static string SourceDirectory([CallerFilePath] string path = "") => System.IO.Path.GetDirectoryName(path)!;
}
