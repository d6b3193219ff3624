using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

public class TensorChunksTests
{
    const string Name = "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight";

    // 300 × 1000 floats = 1,200,000 bytes in fp32: 18 full 64 KiB chunks and a tail of 20,352 bytes.
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
        Assert.Equal(Enumerable.Repeat(65_536, 18).Append(20_352), chunks.Select(c => c.Data.Length));
        Assert.NotNull(chunks[0].Header);
        Assert.All(chunks.Skip(1), c => Assert.Null(c.Header));
        Assert.Equal(new long[] { 300, 1000 }, chunks[0].Header.Shape);
        Assert.Equal(1_200_000, chunks[0].Header.EncodedBytes);
        Assert.Equal("fp32", chunks[0].Header.Encoding);

        using var assembler = new TensorAssembler(_ => null);
        foreach (var chunk in chunks.SkipLast(1))
        {
            Assert.Null(assembler.Add(chunk));
            Assert.True(assembler.InProgress);
        }
        var (name, tensor) = assembler.Add(chunks[^1])!.Value;
        assembler.Finish();
        Assert.Equal(Name, name);
        Assert.Equal(original.bytes.ToArray(), tensor.bytes.ToArray());
    }

    [Fact]
    public void The_assembler_refuses_a_header_it_is_told_to_refuse_more_data_than_announced_and_a_stream_cut_mid_tensor()
    {
        using var original = Sample();
        var chunks = TensorChunks.Split(Name, original, TransferEncoding.Parse("bf16+gzip")).ToList();

        var refusing = new TensorAssembler(h => $"no '{h.Name}' here");
        Assert.Equal($"no '{Name}' here", Assert.Throws<TransferException>(() => refusing.Add(chunks[0])).Message);

        var overfed = new TensorAssembler(_ => null);
        var lying = chunks[0].Clone();
        lying.Header.EncodedBytes = 1000;
        Assert.Contains("sent more than the 1000 bytes it announced", Assert.Throws<TransferException>(() => overfed.Add(lying)).Message);

        // An uncompressed payload's length follows from the shape: a header announcing another is refused before any
        // bytes are buffered.
        var wrongLength = TensorChunks.Split(Name, original, TransferEncoding.Parse("bf16")).First().Clone();
        wrongLength.Header.EncodedBytes = 1000;
        Assert.Contains("payload has 1000 bytes, but bf16 of shape [300, 1000] (300000 elements) needs exactly 600000",
            Assert.Throws<TransferException>(() => new TensorAssembler(_ => null).Add(wrongLength)).Message);

        var cut = new TensorAssembler(_ => null);
        var fp32 = TensorChunks.Split(Name, original, TransferEncoding.Default).ToList();
        cut.Add(fp32[0]);
        Assert.Contains("stream ended inside tensor", Assert.Throws<TransferException>(() => cut.Finish()).Message);
        Assert.Contains("arrived without a header", Assert.Throws<TransferException>(() => new TensorAssembler(_ => null).Add(fp32[1])).Message);
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")]
    [InlineData("fp16")]
    [InlineData("int8:4096")]
    [InlineData("int8:7")]
    [InlineData("bf16+gzip")]
    public void Streamed_chunks_carry_the_same_bytes_as_split_ones_and_decode_to_what_the_codec_decodes(string encodingName)
    {
        var encoding = TransferEncoding.Parse(encodingName);
        using var original = Sample();
        var split = TensorChunks.Split(Name, original, encoding).ToList();
        // Streamed chunks are valid only until the next one is asked for: copy each as it comes.
        var streamed = TensorChunks.Stream(Name, original, encoding).Select(c => c.Clone()).Select(c => { c.Data = Google.Protobuf.ByteString.CopyFrom(c.Data.Span); return c; }).ToList();
        // Chunk boundaries may differ (int8's scales and codes are streamed part by part); the header and the bytes may not.
        Assert.Equal(split[0].Header, streamed[0].Header);
        Assert.All(streamed.Skip(1), c => Assert.Null(c.Header));
        Assert.All(streamed, c => Assert.InRange(c.Data.Length, 0, TensorChunks.MaxChunkBytes));
        Assert.Equal(split.SelectMany(c => c.Data.ToByteArray()), streamed.SelectMany(c => c.Data.ToByteArray()));

        using var expected = TensorCodec.Decode(TensorCodec.Encode(original, encoding), encoding, original.shape);
        using var assembler = new TensorAssembler(_ => null);
        Tensor? received = null;
        foreach (var chunk in streamed) received = assembler.Add(chunk)?.Tensor ?? received;
        assembler.Finish();
        using var decoded = received!;
        Assert.Equal(ScalarType.Float32, decoded.dtype);
        Assert.Equal(expected.bytes.ToArray(), decoded.bytes.ToArray());
    }

    [Fact]
    public void The_streaming_decoder_takes_pieces_of_any_size_across_the_int8_layouts_scales_and_codes()
    {
        var encoding = TransferEncoding.Parse("int8:7");
        using var original = Sample();
        var payload = TensorCodec.Encode(original, encoding);
        using var expected = TensorCodec.Decode(payload, encoding, original.shape);
        using var decoder = new StreamingDecoder(encoding, original.shape, payload.Length);
        // 300000 elements in blocks of 7: 42858 scales (171432 bytes), then the codes; 1000-byte pieces straddle the seam.
        for (int offset = 0; offset < payload.Length; offset += 1000)
        {
            Assert.False(decoder.Complete);
            decoder.Write(payload.AsSpan(offset, Math.Min(1000, payload.Length - offset)));
        }
        using var decoded = decoder.Finish();
        Assert.Equal(expected.bytes.ToArray(), decoded.bytes.ToArray());
        Assert.Throws<InvalidDataException>(() => decoder.Write(new byte[1]));
    }

    /// <summary>Gives at most <c>piece</c> bytes per read, so a reader must resume inside tensors and across the int8
    /// layout's seam.</summary>
    sealed class Trickle(Stream inner, int piece) : Stream
    {
        public override bool CanRead => true;
        public override bool CanWrite => false;
        public override bool CanSeek => false;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, piece));
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(buffer[..Math.Min(buffer.Length, piece)], cancellationToken);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")]
    [InlineData("int8:7")]
    [InlineData("bf16+gzip")]
    public async Task Bulk_frames_carry_each_tensors_bytes_raw_after_its_header_and_read_back_straight_into_the_decoders(string encodingName)
    {
        var encoding = TransferEncoding.Parse(encodingName);
        using var large = Sample();
        using var small = tensor(new[] { 1f, -2f, 3.5f }, new long[] { 1, 3 });
        var tensors = new Dictionary<string, Tensor> { [Name] = large, ["a.small"] = small };
        using var encoded = new EncodedTensors(tensors, encoding);
        // The served chunks hold what the codec encodes, tensor by tensor in name order.
        Assert.Equal(tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).SelectMany(kv => TensorCodec.Encode(kv.Value, encoding)),
            encoded.Chunks.SelectMany(c => c.Data.ToByteArray()));

        using var wire = new MemoryStream();
        long written = await BulkFrames.WriteTensorsAsync(wire, encoded.Chunks, "", null, default);
        await BulkFrames.WriteEndAsync(wire, default);
        var headers = encoded.Chunks.Where(c => c.Header is not null).Select(c => new BulkTensor { Header = c.Header }).ToList();
        long payload = encoded.Chunks.Sum(c => (long)c.Data.Length);
        // Nothing but a 4-byte length and the header message before each tensor's bytes, and the end frame.
        Assert.Equal(headers.Sum(h => 4 + h.CalculateSize()) + payload, written);
        Assert.Equal(written + 4, wire.Length);

        wire.Position = 0;
        var (received, bytes) = await BulkFrames.ReadTensorsAsync(new Trickle(wire, 777), _ => null, null, default);
        Assert.Equal(wire.Length, bytes);
        Assert.Equal(new[] { "a.small", Name }, received.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, original) in tensors)
        {
            using var expected = TensorCodec.Decode(TensorCodec.Encode(original, encoding), encoding, original.shape);
            using var got = received[name];
            Assert.Equal(expected.bytes.ToArray(), got.bytes.ToArray());
        }
    }

    [Fact]
    public async Task A_bulk_reader_refuses_a_refused_header_an_oversized_frame_and_a_stream_cut_inside_a_tensor()
    {
        using var original = Sample();
        using var encoded = new EncodedTensors(new Dictionary<string, Tensor> { [Name] = original }, TransferEncoding.Default);
        using var wire = new MemoryStream();
        await BulkFrames.WriteTensorsAsync(wire, encoded.Chunks, "", null, default);
        byte[] full = wire.ToArray();

        var refused = await Assert.ThrowsAsync<TransferException>(() => BulkFrames.ReadTensorsAsync(new MemoryStream(full), h => $"no '{h.Name}' here", null, default));
        Assert.Equal($"no '{Name}' here", refused.Message);

        var cut = await Assert.ThrowsAsync<EndOfStreamException>(() => BulkFrames.ReadTensorsAsync(new MemoryStream(full[..^100]), _ => null, null, default));
        Assert.Contains("of 1200000 bytes of a tensor", cut.Message);

        var huge = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(huge, BulkFrames.MaxMessageBytes + 1);
        var oversized = await Assert.ThrowsAsync<TransferException>(() => BulkFrames.ReadTensorsAsync(new MemoryStream(huge), _ => null, null, default));
        Assert.Contains("announces 1048577 bytes", oversized.Message);

        // A header whose length the shape cannot have is refused before anything is allocated for it.
        var lying = encoded.Chunks[0].Header.Clone();
        lying.EncodedBytes = 12;
        using var bad = new MemoryStream();
        await BulkFrames.WriteMessageAsync(bad, new BulkTensor { Header = lying }, default);
        bad.Position = 0;
        var length = await Assert.ThrowsAsync<TransferException>(() => BulkFrames.ReadTensorsAsync(bad, _ => null, null, default));
        Assert.Contains("needs exactly 1200000", length.Message);
    }

    [Theory]
    [InlineData("bf16", 777)]
    [InlineData("fp16", 777)]
    [InlineData("bf16", 3 << 20)]
    public async Task A_bf16_or_fp16_payload_is_widened_straight_into_a_destination_even_when_reads_split_its_elements(string encodingName, int piece)
    {
        var encoding = TransferEncoding.Parse(encodingName);
        using var original = Sample();
        var payload = TensorCodec.Encode(original, encoding);
        using var expected = TensorCodec.Decode(payload, encoding, original.shape);
        var destination = full(original.shape, float.NaN);
        var header = new TensorHeader { Name = Name, Dtype = TensorChunks.Float32, Encoding = encoding.ToString(), EncodedBytes = payload.Length };
        header.Shape.AddRange(original.shape);
        using var decoder = TensorAssembler.Decoder(header, _ => destination);
        // Odd-sized reads end inside an element; a read larger than the staging buffer is cut to it.
        await BulkFrames.ReadPayloadAsync(new Trickle(new MemoryStream(payload), piece), decoder, null, default);
        using var decoded = decoder.Finish();
        Assert.Same(destination, decoded);
        Assert.Equal(expected.bytes.ToArray(), decoded.bytes.ToArray());
    }

    [Fact]
    public void A_widening_decoder_that_never_completes_frees_its_destination_and_refuses_a_destination_for_int8()
    {
        var encoding = TransferEncoding.Parse("bf16");
        var destination = zeros(new long[] { 4 });
        using (var decoder = new StreamingDecoder(encoding, [4], 8, destination))
            decoder.Write(new byte[3]);
        Assert.True(destination.IsInvalid);
        using var other = zeros(new long[] { 4 });
        Assert.Throws<ArgumentException>(() => new StreamingDecoder(TransferEncoding.Parse("int8:4"), [4], TensorCodec.EncodedLength(TransferEncoding.Parse("int8:4"), 4), other));
    }

    [Theory]
    [InlineData("bf16", ScalarType.BFloat16)]
    [InlineData("fp16", ScalarType.Float16)]
    public void A_rounds_16_bit_encoding_goes_back_to_the_pool_and_the_next_rounds_encoding_reuses_it_with_the_new_values(string encodingName, ScalarType dtype)
    {
        var encoding = TransferEncoding.Parse(encodingName);
        using var pool = new ReceivePool(1L << 30);
        using var first = Sample();
        using var second = first * -3 + 1;
        var one = new EncodedTensors(new Dictionary<string, Tensor> { [Name] = first }, encoding, pool);
        Assert.Equal(TensorCodec.Encode(first, encoding), one.Chunks.SelectMany(c => c.Data.ToByteArray()));
        one.Dispose();
        Assert.Equal(first.NumberOfElements * 2, pool.HeldBytes);
        using var two = new EncodedTensors(new Dictionary<string, Tensor> { [Name] = second }, encoding, pool);
        Assert.Equal(0, pool.HeldBytes);
        Assert.Equal(TensorCodec.Encode(second, encoding), two.Chunks.SelectMany(c => c.Data.ToByteArray()));
        Assert.Null(pool.Rent(first.shape, dtype));
    }

    [Fact]
    public void Streamed_bf16_rounds_every_special_value_as_libtorch_does_and_keeps_a_nan_a_nan()
    {
        float[] values =
        [
            0f, -0f, 1f, -1f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon,
            1e-40f, BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), BitConverter.UInt32BitsToSingle(0x3F807FFF),
            BitConverter.UInt32BitsToSingle(0x3F808001), BitConverter.UInt32BitsToSingle(0x7F7F8000), float.NaN, BitConverter.UInt32BitsToSingle(0xFFC00001),
        ];
        // Enough copies for the vector loop and the scalar tail both to see every value.
        var many = Enumerable.Range(0, 37).SelectMany(_ => values).ToArray();
        using var original = tensor(many, new long[] { many.Length });
        var encoding = TransferEncoding.Parse("bf16");
        var streamed = TensorChunks.Stream(Name, original, encoding).SelectMany(c => c.Data.ToByteArray()).ToArray();
        var codec = TensorCodec.Encode(original, encoding);
        Assert.Equal(codec.Length, streamed.Length);
        for (int i = 0; i < many.Length; i++)
        {
            ushort mine = BitConverter.ToUInt16(streamed, 2 * i), theirs = BitConverter.ToUInt16(codec, 2 * i);
            if (float.IsNaN(many[i])) Assert.True((mine & 0x7F80) == 0x7F80 && (mine & 0x7F) != 0, $"element {i}: {mine:X4} is not a NaN");
            else Assert.True(mine == theirs, $"element {i} ({BitConverter.SingleToUInt32Bits(many[i]):X8}): {mine:X4}, libtorch {theirs:X4}");
        }
    }

    [Fact]
    public void The_decoders_next_buffer_is_the_rest_of_the_current_part_and_advance_moves_across_parts()
    {
        var encoding = TransferEncoding.Parse("int8:7");
        using var original = Sample();
        var payload = TensorCodec.Encode(original, encoding);
        using var expected = TensorCodec.Decode(payload, encoding, original.shape);
        using var decoder = new StreamingDecoder(encoding, original.shape, payload.Length);
        // The scales (42858 × 4 bytes) are the first part, the codes (300000 bytes) the second.
        Assert.Equal(171_432, decoder.NextBuffer().Length);
        int offset = 0;
        while (!decoder.Complete)
        {
            var buffer = decoder.NextBuffer();
            int n = Math.Min(buffer.Length, 50_000);
            payload.AsSpan(offset, n).CopyTo(buffer.Span);
            decoder.Advance(n);
            offset += n;
            if (offset == 171_432) Assert.Equal(300_000, decoder.NextBuffer().Length);
        }
        Assert.True(decoder.NextBuffer().IsEmpty);
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Advance(1));
        using var decoded = decoder.Finish();
        Assert.Equal(expected.bytes.ToArray(), decoded.bytes.ToArray());
    }
}
