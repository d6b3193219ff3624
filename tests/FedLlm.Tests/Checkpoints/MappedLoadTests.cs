using System.Security.Cryptography;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Quantization;
using Xunit;
using static FedLlm.Tests.Checkpoints.CheckpointTestSupport;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

/// <summary>
/// Loading through memory maps: a bf16 checkpoint loads bit for bit into bf16 (parameters adopting the file's pages),
/// fp32 (read and converted into the parameters) and int8/NF4 (quantised from the map) exactly as the bytes on disk say; writes never
/// reach the file; files that cannot be mapped, or that shrink after opening, still read or fail with the file's name.
/// </summary>
public sealed class MappedLoadTests : IDisposable
{
    readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    // Sharded small (40 kB a shard) so several files are mapped; untied head so lm_head is loaded too.
    static readonly LlamaConfig Tiny = new()
    {
        VocabSize = 256, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4,
        NumKeyValueHeads = 2, HeadDim = 16, RmsNormEps = 1e-5, TieWordEmbeddings = false, MaxPositionEmbeddings = 64,
    };

    LlamaForCausalLM SavedBf16Model()
    {
        var model = LlamaForCausalLM.CreateRandom(Tiny, seed: 7, std: 0.5, dtype: ScalarType.BFloat16);
        ModelLoader.Save(_dir.Path, model, maxShardBytes: 40_000);
        Assert.True(Directory.GetFiles(_dir.Path, "*.safetensors").Length > 1, "the checkpoint should be sharded");
        return model;
    }

    static Dictionary<string, Tensor> Parameters(LlamaForCausalLM model) =>
        model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    /// <summary>Paths of this process's file mappings of the checkpoint's shards (/proc/self/maps).</summary>
    string[] MappedShards() => File.ReadAllLines("/proc/self/maps")
        .Where(line => line.Contains(_dir.Path, StringComparison.Ordinal))
        .ToArray();

    /// <summary>Same dtype, shape and every element equal (bitwise for the finite numbers used here).</summary>
    static bool Same(Tensor a, Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var equal = a.eq(b);
        using var all = equal.all();
        return all.item<bool>();
    }

    static string Hash(string directory) => string.Join(",", Directory.GetFiles(directory).Order()
        .Select(f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))));

    [Fact]
    public void Bf16_load_is_bit_identical_and_views_the_file_until_the_model_is_disposed()
    {
        // Prepare
        using var original = SavedBf16Model();
        Assert.Empty(MappedShards());

        // Execute
        var loaded = ModelLoader.Load(_dir.Path, ScalarType.BFloat16);
        string[] whileLoaded = MappedShards();
        var expected = Parameters(original);
        foreach (var (name, parameter) in Parameters(loaded))
        {
            // Assert: every bit as saved (the save wrote the original's bf16 bytes unchanged).
            Assert.Equal(ScalarType.BFloat16, parameter.dtype);
            Assert.True(Same(parameter, expected[name]), $"{name} differs from the saved bf16 weight");
        }
        loaded.Dispose();

        // Assert: the parameters were the files' pages (no copy), and nothing keeps them mapped once the model is gone.
        Assert.NotEmpty(whileLoaded);
        Assert.Empty(MappedShards());
    }

    [Fact]
    public void Fp32_load_of_a_bf16_checkpoint_equals_the_exact_widening()
    {
        using var original = SavedBf16Model();

        using var loaded = ModelLoader.Load(_dir.Path, ScalarType.Float32);

        var expected = Parameters(original);
        foreach (var (name, parameter) in Parameters(loaded))
        {
            using var widened = expected[name].to(ScalarType.Float32);
            Assert.Equal(ScalarType.Float32, parameter.dtype);
            Assert.True(Same(parameter, widened), $"{name} differs from its bf16 weight widened to float32");
        }
        Assert.Empty(MappedShards()); // converted into the model's own memory; the maps were released
    }

    [Theory]
    [InlineData("int8")]
    [InlineData("nf4")]
    public void Quantised_load_from_the_map_equals_quantising_the_saved_weight(string precision)
    {
        using var original = SavedBf16Model();
        var weights = BaseWeights.Parse(precision);

        var loaded = ModelLoader.Load(_dir.Path, weights);

        var originals = original.named_modules().ToDictionary(m => m.name, m => m.module);
        int compared = 0;
        foreach (var (path, module) in loaded.named_modules())
        {
            if (module is not QuantizedLinear quantized) continue;
            var dense = (DenseLinear)originals[path];
            using var reference = (QuantizedLinear)weights.LayerFactory(dense.InFeatures, dense.OutFeatures, false, weights.ComputeDtype, null);
            reference.LoadWeight(dense.Weight);
            using var got = quantized.DequantizedWeight(ScalarType.Float32);
            using var want = reference.DequantizedWeight(ScalarType.Float32);
            Assert.True(Same(got, want), $"{path}: the {precision} codes differ from quantising the saved weight");
            compared++;
        }
        Assert.Equal(2 * 7, compared);
        loaded.Dispose();
        Assert.Empty(MappedShards()); // the norms and embeddings viewed the file; the quantised weights' maps were released

    }

    [Fact]
    public void Writing_to_a_loaded_parameter_never_reaches_the_file()
    {
        using var original = SavedBf16Model();
        string before = Hash(_dir.Path);

        using (var loaded = ModelLoader.Load(_dir.Path, ScalarType.BFloat16))
        using (no_grad())
        {
            foreach (var (_, parameter) in loaded.named_parameters()) parameter.add_(1);
        }

        Assert.Equal(before, Hash(_dir.Path));
        using var again = ModelLoader.Load(_dir.Path, ScalarType.BFloat16);
        var expected = Parameters(original);
        foreach (var (name, parameter) in Parameters(again)) Assert.True(Same(parameter, expected[name]), name);
    }

    [Fact]
    public void Map_views_the_numbers_written_and_writes_to_it_stay_private()
    {
        var header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}       "; // 64 bytes: data aligned
        var path = _dir.File("hand.safetensors");
        var bytes = HandBuilt(header, Float32Bytes(1f, 2f, 3f, -4.5f));
        File.WriteAllBytes(path, bytes);
        using var file = SafeTensorsFile.Open(path);

        using var mapped = file.Map("w");

        Assert.NotNull(mapped);
        Assert.Equal(new long[] { 2, 2 }, mapped.shape);
        Assert.Equal(new[] { 1f, 2f, 3f, -4.5f }, mapped.data<float>().ToArray());
        using (mapped.mul_(10)) { }
        Assert.Equal(bytes, File.ReadAllBytes(path));
        using var read = file.Read("w");
        Assert.Equal(new[] { 1f, 2f, 3f, -4.5f }, read.data<float>().ToArray());
    }

    [Fact]
    public void A_tensor_not_aligned_to_its_element_size_is_not_mapped_but_still_reads()
    {
        // Prepare: a 61-byte header (one space of padding) puts the I32 data at byte 69, where no int32 view can start.
        var data = Float32Bytes(0f, 0f, 0f, 0f);
        data[12] = 1;
        var path = _dir.File("unaligned.safetensors");
        File.WriteAllBytes(path, HandBuilt("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}} ", data));
        using var file = SafeTensorsFile.Open(path);

        // Execute
        using var mapped = file.Map("test");
        using var destination = zeros(2, 2, dtype: ScalarType.Float64);
        file.ReadInto("test", destination);

        // Assert
        Assert.Null(mapped);
        Assert.Equal(new[] { 0.0, 0.0, 0.0, 1.0 }, destination.data<double>().ToArray());
    }

    [Fact]
    public void A_file_truncated_after_opening_fails_with_its_name_instead_of_faulting()
    {
        var header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}         "; // 64 bytes
        var path = _dir.File("shrinks.safetensors");
        File.WriteAllBytes(path, HandBuilt(header, Float32Bytes(1f, 2f, 3f, 4f)));
        using var file = SafeTensorsFile.Open(path);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write)) stream.SetLength(8 + 64 + 8);

        var mapError = Assert.Throws<CheckpointException>(() => file.Map("w"));
        using var destination = empty(4);
        var readError = Assert.Throws<CheckpointException>(() => file.ReadInto("w", destination));

        Assert.Contains(path, mapError.Message);
        Assert.Contains("truncated after it was opened", mapError.Message);
        Assert.Equal(mapError.Message, readError.Message);
    }
}
