using FedLlm.Checkpoints;
using FedLlm.Quantization;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Modeling;

/// <summary>Builds a <see cref="LlamaForCausalLM"/> from a Hugging Face checkpoint folder and writes one back.</summary>
public static class ModelLoader
{
    /// <summary>
    /// Reads config.json and the safetensors weights (single file or sharded). A tensor stored in the parameter's own
    /// dtype becomes the parameter without a copy (a private memory map of the file, see <c>TryAdopt</c>); one stored in
    /// another dtype is read and converted chunk by chunk straight into the parameter, so loading never holds two copies
    /// of the model.
    /// </summary>
    public static LlamaForCausalLM Load(string directory, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        Load(directory, new BaseWeights(dtype == ScalarType.Float32 ? BasePrecision.Fp32 : BasePrecision.Bf16) { ComputeDtype = dtype }, device);

    /// <summary>
    /// As <see cref="Load(string, ScalarType, Device?)"/>, with the base stored as <paramref name="weights"/> says
    /// (<c>--base-dtype fp32|bf16|int8|nf4</c>: <c>ModelLoader.Load(dir, BaseWeights.Parse(text), device)</c>).
    /// Quantised projections are quantised tensor by tensor as they are read, so peak memory is the quantised model
    /// plus one full-precision tensor (and its float32 working copy), never the full-precision model.
    /// </summary>
    public static LlamaForCausalLM Load(string directory, BaseWeights weights, Device? device = null)
    {
        if (!Directory.Exists(directory)) throw new ModelConfigException($"{directory}: model folder not found");
        var config = LlamaConfig.Load(Path.Combine(directory, "config.json"));
        using var checkpoint = CheckpointFolder.Open(directory);
        var model = new LlamaForCausalLM(config, weights.ComputeDtype, device, weights.LayerFactory);
        try
        {
            using var noGrad = no_grad();
            // Non-finite weights would turn every logit into NaN: generation would print garbage and evaluation report scores.
            foreach (var (name, parameter) in model.named_parameters())
            {
                string key = Require(checkpoint, directory, config, name);
                LoadParameter(checkpoint, key, parameter);
            }
            foreach (var (path, module) in model.named_modules())
            {
                if (module is not QuantizedLinear quantized) continue;
                string key = Require(checkpoint, directory, config, path + ".weight");
                // Quantised straight from the page cache through a memory map when the file allows it: no read, and no
                // full-precision tensor on the heap; its pages leave the resident set when the map is disposed. Checked
                // finite before quantisation hides a NaN in a scale.
                var mapped = checkpoint.MapFinite(key);
                using (var weight = mapped ?? checkpoint.Read(key))
                {
                    if (mapped is null) FiniteTensors.Require(weight, key, checkpoint.FileHolding(key), "load");
                    quantized.LoadWeight(weight);
                }
                if (mapped is null) NativeHeap.Trim(); // see NativeHeap: without it, freed full-precision tensors stay resident as heap holes
            }
            model.FreezeAll();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Fills <paramref name="parameter"/> from the checkpoint, every value checked finite in the parameter's dtype (NaN
    /// weights would turn every logit into NaN). Stored in the parameter's dtype on the CPU, the parameter adopts the
    /// checkpoint's own bytes (a private, copy-on-write memory map) instead of a copy: a warm load then reads nothing into
    /// fresh memory. Stored in another dtype, the file is read and converted straight into the parameter, the check on
    /// the same pass. A parameter on another device is filled from host memory (the map, or a converted read).
    /// </summary>
    /// <remarks>
    /// Writes to an adopted parameter (merging an adapter into the base) copy the pages they touch and never reach the
    /// file. As with every memory-mapped loader (safetensors' and llama.cpp's), a checkpoint file truncated or rewritten
    /// in place while the model is alive makes its next read fault; FedLlm's own writers replace files by renaming a new
    /// one over them, which leaves the mapped file intact.
    /// </remarks>
    static void LoadParameter(CheckpointFolder checkpoint, string key, Tensor parameter)
    {
        var info = checkpoint.Info(key);
        bool sameType = info.Dtype.ToScalarType() == parameter.dtype;
        bool sameShape = parameter.shape.AsSpan().SequenceEqual(info.Shape);
        if (parameter.device_type == TorchSharp.DeviceType.CPU)
        {
            using var mapped = sameType && sameShape ? checkpoint.MapFinite(key) : null;
            if (mapped is null)
            {
                checkpoint.ReadFiniteInto(key, parameter); // converts, or reports the shape mismatch
                return;
            }
            // The parameter's storage is now the map's, and its empty one is freed. TorchSharp returns the same object
            // from this in-place call: disposing it would dispose the parameter.
            var adopted = parameter.set_(mapped);
            if (!ReferenceEquals(adopted, parameter)) adopted.Dispose();
            return;
        }
        if (!sameShape) checkpoint.ReadInto(key, parameter); // reports the shape mismatch
        var mappedHost = sameType ? checkpoint.MapFinite(key) : null;
        using var host = mappedHost ?? checkpoint.Read(key, parameter.dtype); // converted on the CPU
        if (mappedHost is null) FiniteTensors.Require(host, key, checkpoint.FileHolding(key), "load");
        var copied = parameter.copy_(host); // to the device
        if (!ReferenceEquals(copied, parameter)) copied.Dispose();
    }

    static string Require(CheckpointFolder checkpoint, string directory, LlamaConfig config, string name) =>
        checkpoint.Contains(name)
            ? name
            : throw new CheckpointException($"{directory}: the checkpoint has no tensor '{name}' that a {config.Family} model with this config.json needs");

    /// <summary>Writes config.json and model.safetensors (sharded above <paramref name="maxShardBytes"/>) like save_pretrained.</summary>
    public static void Save(string directory, LlamaForCausalLM model, long maxShardBytes = 5L << 30)
    {
        if (model.named_modules().Any(m => m.module is QuantizedLinear))
            throw new InvalidOperationException("cannot save a model with an int8/NF4 base as a Hugging Face checkpoint; load it with --base-dtype fp32 or bf16");
        Directory.CreateDirectory(directory);
        var config = model.Config with { TorchDtype = model.Dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" } };
        config.Save(Path.Combine(directory, "config.json"));
        // Base weights only: an adapter's lora_A/B and the base_layer indirection are not part of a base checkpoint.
        var tensors = model.named_parameters()
            .Where(p => !p.name.Contains(".lora_", StringComparison.Ordinal))
            .Select(p => new KeyValuePair<string, Tensor>(p.name.Replace(".base_layer.", "."), p.parameter));
        CheckpointWriter.Write(directory, tensors, maxShardBytes);
    }
}
