using FedLlm.Quantization;
using FedLlm.Checkpoints;
using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Serving;

/// <summary>
/// One base model with any number of named PEFT adapters loaded at once: every projection some adapter targets is
/// wrapped in a <see cref="MultiLoraLinear"/> that holds each adapter's matrices, and a request picks its adapter by name.
/// </summary>
/// <remarks>
/// Adapters are read with PEFT's key names and checked as <see cref="AdapterIO.Load"/> checks them: every tensor the
/// config's target modules imply must be present with the right shape, and no other tensor may remain.
/// </remarks>
public sealed class AdapterBank : IDisposable
{
    /// <summary>The slot of "no adapter": the base model alone.</summary>
    public const int BaseSlot = -1;

    private readonly Dictionary<string, int> slots = new(StringComparer.Ordinal);
    private readonly Dictionary<string, MultiLoraLinear> sites = new(StringComparer.Ordinal);

    /// <summary>Wraps nothing yet: adapters are added with <see cref="Add"/>.</summary>
    /// <param name="model">The base model; it must carry no LoRA adapters of its own.</param>
    public AdapterBank(LlamaForCausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (LoraInjector.Sites(model).Count > 0) throw new ArgumentException("the base model already carries LoRA adapters", nameof(model));
        Model = model;
        model.FreezeAll();
    }

    /// <summary>The base model the adapters are attached to; the bank wraps its projections and freezes it.</summary>
    public LlamaForCausalLM Model { get; }

    /// <summary>Shared by every wrapped projection; the decoder routes each batch through it.</summary>
    public AdapterRouting Routing { get; } = new();

    /// <summary>The adapter names, in the order they were added.</summary>
    public IReadOnlyList<string> Names => slots.OrderBy(kv => kv.Value).Select(kv => kv.Key).ToList();

    /// <summary>The slot of an adapter name, or null when no adapter has that name.</summary>
    public int? Slot(string name) => slots.TryGetValue(name, out var slot) ? slot : null;

    /// <summary>Loads the PEFT adapter folder <paramref name="directory"/> under <paramref name="name"/>.</summary>
    /// <exception cref="AdapterException">The folder is not a usable adapter for this model (the message names the file).</exception>
    public void Add(string name, string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (slots.ContainsKey(name)) throw new ArgumentException($"adapter name '{name}' is given twice", nameof(name));
        var options = AdapterIO.ReadOptions(directory);
        string weightsPath = Path.Combine(directory, AdapterIO.WeightsFileName);
        if (!File.Exists(weightsPath))
            throw new AdapterException($"{directory}: no {AdapterIO.WeightsFileName} (adapter_model.bin pickles are not supported)");
        using var file = SafeTensorsFile.Open(weightsPath);
        var onDisk = file.Tensors.Keys.ToDictionary(k => k.Replace(".lora_A.default.", ".lora_A.").Replace(".lora_B.default.", ".lora_B."), k => k);
        var targets = new HashSet<string>(options.TargetModules, StringComparer.Ordinal);
        var expected = Projections(Model).Where(p => targets.Contains(p.Name)).ToList();
        if (expected.Count == 0)
            throw new AdapterException($"{directory}: target_modules [{string.Join(", ", options.TargetModules)}] name no projection of this model");
        string Key(string path, string matrix) => AdapterIO.KeyPrefix + path + $".{matrix}.weight";
        var missing = expected.SelectMany(p => new[] { Key(p.Path, "lora_A"), Key(p.Path, "lora_B") }).Where(k => !onDisk.ContainsKey(k)).ToList();
        if (missing.Count > 0) throw new AdapterException($"{weightsPath}: missing {missing.Count} adapter tensor(s), e.g. '{missing[0]}'");
        var known = expected.SelectMany(p => new[] { Key(p.Path, "lora_A"), Key(p.Path, "lora_B") }).ToHashSet(StringComparer.Ordinal);
        var unexpected = onDisk.Keys.Where(k => !known.Contains(k)).ToList();
        if (unexpected.Count > 0)
            throw new AdapterException($"{weightsPath}: {unexpected.Count} tensor(s) this model has no place for, e.g. '{unexpected[0]}' (target modules or layer count differ?)");

        int slot = slots.Count;
        var loaded = new List<(string Path, FrozenLinear Base, LoraPair Pair)>();
        try
        {
            foreach (var (path, _, _, module) in expected)
            {
                var frozen = module switch
                {
                    FrozenLinear f => f,
                    MultiLoraLinear m => m.BaseLayer,
                    _ => throw new AdapterException($"{path}: cannot attach an adapter to a {module.GetType().Name}"),
                };
                var a = ReadAdapterMatrix(file, onDisk[Key(path, "lora_A")], options.Rank, frozen.InFeatures, weightsPath);
                var b = ReadAdapterMatrix(file, onDisk[Key(path, "lora_B")], frozen.OutFeatures, options.Rank, weightsPath);
                loaded.Add((path, frozen, new LoraPair(a.to(frozen.Device).DetachFromDisposeScope(), b.to(frozen.Device).DetachFromDisposeScope(), options.Scaling)));
            }
        }
        catch
        {
            foreach (var l in loaded) { l.Pair.A.Dispose(); l.Pair.B.Dispose(); }
            throw;
        }
        foreach (var (path, _, replace, _) in expected)
        {
            if (!sites.TryGetValue(path, out var site))
            {
                var (_, frozen, _) = loaded.First(l => l.Path == path);
                site = new MultiLoraLinear(frozen, Routing);
                replace(site);
                sites[path] = site;
            }
            site.Add(slot, loaded.First(l => l.Path == path).Pair);
        }
        slots[name] = slot;
    }

    static Tensor ReadAdapterMatrix(SafeTensorsFile file, string key, long rows, long columns, string path)
    {
        var info = file.Tensors[key];
        if (info.Shape.Length != 2 || info.Shape[0] != rows || info.Shape[1] != columns)
            throw new AdapterException($"{path}: '{key}' has shape {SafeTensorInfo.FormatShape(info.Shape)}, expected [{rows}, {columns}] (r or model shape differ?)");
        return file.Read(key, ScalarType.Float32);
    }

    /// <summary>Every projection of the model with its PEFT path and a way to put a module in its place.</summary>
    static IEnumerable<(string Path, string Name, Action<MultiLoraLinear> Replace, TorchSharp.torch.nn.Module<Tensor, Tensor> Module)> Projections(LlamaForCausalLM model)
    {
        var layers = model.Model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var attention = layers[i].SelfAttention;
            foreach (var (name, module) in attention.Projections().ToList())
                yield return ($"model.layers.{i}.self_attn.{name}", name, m => attention.ReplaceProjection(name, m), module);
            var mlp = layers[i].Mlp;
            foreach (var (name, module) in mlp.Projections().ToList())
                yield return ($"model.layers.{i}.mlp.{name}", name, m => mlp.ReplaceProjection(name, m), module);
        }
    }

    /// <summary>Frees the routing's row indices (the adapters' matrices are freed with the model's modules).</summary>
    public void Dispose() => Routing.Dispose();
}
