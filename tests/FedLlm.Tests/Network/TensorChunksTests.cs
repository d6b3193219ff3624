using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

public class TensorChunksTests
{
    const string Name = "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight";

    // 300 × 1000 floats = 1,200,000 bytes in fp32: one full 1 MiB chunk and a tail of 151,424 bytes.
    static Tensor Sample()
    {
        using var generator = new Generator(7);
        return randn(new long[] { 300, 1000 }, generator: generator);
    }

    [Fact]
    public void A_tensor_larger_than_a_chunk_travels_as_a_header_chunk_and_tails_and_reassembles_bit_for_bit()
    {
        using var original = Sample();
        var chunks = TensorChunks.Split(Name, original, TransferEncoding.Default).ToList();
        Assert.Equal(new[] { 1_048_576, 151_424 }, chunks.Select(c => c.Data.Length));
        Assert.NotNull(chunks[0].Header);
        Assert.Null(chunks[1].Header);
        Assert.Equal(new long[] { 300, 1000 }, chunks[0].Header.Shape);
        Assert.Equal(1_200_000, chunks[0].Header.EncodedBytes);
        Assert.Equal("fp32", chunks[0].Header.Encoding);

        var assembler = new TensorAssembler(_ => null);
        Assert.Null(assembler.Add(chunks[0]));
        Assert.True(assembler.InProgress);
        var (name, tensor) = assembler.Add(chunks[1])!.Value;
        assembler.Finish();
        Assert.Equal(Name, name);
        Assert.Equal(original.bytes.ToArray(), tensor.bytes.ToArray());
    }

    [Fact]
    public void The_assembler_refuses_a_header_it_is_told_to_refuse_more_data_than_announced_and_a_stream_cut_mid_tensor()
    {
        using var original = Sample();
        var chunks = TensorChunks.Split(Name, original, TransferEncoding.Parse("bf16")).ToList();
        Assert.Equal(600_000, chunks.Single().Header.EncodedBytes);

        var refusing = new TensorAssembler(h => $"no '{h.Name}' here");
        Assert.Equal($"no '{Name}' here", Assert.Throws<TransferException>(() => refusing.Add(chunks[0])).Message);

        var overfed = new TensorAssembler(_ => null);
        var lying = chunks[0].Clone();
        lying.Header.EncodedBytes = 1000;
        Assert.Contains("sent more than the 1000 bytes it announced", Assert.Throws<TransferException>(() => overfed.Add(lying)).Message);

        var cut = new TensorAssembler(_ => null);
        var fp32 = TensorChunks.Split(Name, original, TransferEncoding.Default).ToList();
        cut.Add(fp32[0]);
        Assert.Contains("stream ended inside tensor", Assert.Throws<TransferException>(() => cut.Finish()).Message);
        Assert.Contains("arrived without a header", Assert.Throws<TransferException>(() => new TensorAssembler(_ => null).Add(fp32[1])).Message);
    }
}
