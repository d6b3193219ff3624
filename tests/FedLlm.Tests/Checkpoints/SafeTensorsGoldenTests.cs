using System.Text.Json;
using FedLlm.Checkpoints;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

/// <summary>
/// Parity with PyTorch: Fixtures/torch_golden.safetensors holds tensors whose bytes torch 1.13 produced, laid out by a
/// hand-written Python script (make_torch_golden.py, committed next to it); torch_golden.json holds torch's own
/// conversion of each to float32 (as bit patterns) or int64.
/// </summary>
public sealed class SafeTensorsGoldenTests
{
    static readonly string Fixtures = Path.Combine(SourceDirectory(), "Fixtures");

    [Fact]
    public void Read_TorchWrittenFile_MatchesTorchValues()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures, "torch_golden.safetensors"));
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "torch_golden.json")));

        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(expected.RootElement.EnumerateObject().Select(p => p.Name), file.Tensors.Keys);
        foreach (var entry in expected.RootElement.EnumerateObject())
        {
            var info = file.Tensors[entry.Name];
            Assert.Equal(entry.Value.GetProperty("dtype").GetString(), info.Dtype.ToString());
            Assert.Equal(entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), info.Shape);
            if (entry.Value.TryGetProperty("float32_bits", out var bits))
            {
                using var values = file.Read(entry.Name, ScalarType.Float32);
                var actualBits = Values<float>(values).Select(BitConverter.SingleToUInt32Bits);
                Assert.Equal(bits.EnumerateArray().Select(b => b.GetUInt32()), actualBits);
            }
            else
            {
                using var values = file.Read(entry.Name, ScalarType.Int64);
                Assert.Equal(entry.Value.GetProperty("int64").EnumerateArray().Select(v => v.GetInt64()), Values<long>(values));
            }
        }
    }

    [Fact]
    public void Rewrite_TorchWrittenFile_KeepsEveryByteOfEveryTensor()
    {
        // Read each tensor in its own dtype, write them all with FedLlm's writer, and compare the raw tensor bytes with
        // the slices of the torch-written file.
        var source = Path.Combine(Fixtures, "torch_golden.safetensors");
        var sourceBytes = File.ReadAllBytes(source);
        using var dir = new TempDirectory();
        var target = dir.File("rewritten.safetensors");
        using (var file = SafeTensorsFile.Open(source))
        {
            var tensors = file.Tensors.Keys.Select(name => new KeyValuePair<string, Tensor>(name, file.Read(name))).ToList();
            try
            {
                SafeTensorsWriter.Write(target, tensors, file.Metadata);
            }
            finally
            {
                tensors.ForEach(kv => kv.Value.Dispose());
            }
        }

        using var original = SafeTensorsFile.Open(source);
        using var rewritten = SafeTensorsFile.Open(target);
        var targetBytes = File.ReadAllBytes(target);
        Assert.Equal(original.Metadata, rewritten.Metadata);
        foreach (var (name, info) in original.Tensors)
        {
            var copy = rewritten.Tensors[name];
            Assert.Equal(info.Shape, copy.Shape);
            Assert.Equal(
                sourceBytes.AsSpan((int)info.Offset, (int)info.ByteLength).ToArray(),
                targetBytes.AsSpan((int)copy.Offset, (int)copy.ByteLength).ToArray());
        }
    }
}
