using FedLlm.Quantization;
using FedLlm.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Peft;

/// <summary>One injected adapter and where it sits, e.g. <c>model.layers.3.self_attn.q_proj</c>.</summary>
public sealed record LoraSite(string ModulePath, LoraLinear Layer);

/// <summary>Wraps a model's target projections in <see cref="LoraLinear"/> and freezes everything else (PEFT's get_peft_model).</summary>
public static class LoraInjector
{
    /// <summary>Injects adapters into every target projection, in layer order; returns the sites.</summary>
    /// <param name="generator">Random source for A's initialisation, so a seed reproduces the adapter.</param>
    /// <param name="model">The model; frozen here, then given adapters on the targeted projections.</param>
    /// <param name="options">Rank, alpha, dropout and target modules (validated here).</param>
    public static IReadOnlyList<LoraSite> Inject(LlamaForCausalLM model, LoraOptions options, Generator? generator = null)
    {
        options.Validate();
        if (Sites(model).Count > 0) throw new InvalidOperationException("the model already carries LoRA adapters");
        model.FreezeAll();
        var targets = new HashSet<string>(options.TargetModules, StringComparer.Ordinal);
        var layers = model.Model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var attention = layers[i].SelfAttention;
            foreach (var (name, module) in attention.Projections().ToList())
                if (targets.Contains(name)) attention.ReplaceProjection(name, Wrap(module, options, generator, $"model.layers.{i}.self_attn.{name}"));
            var mlp = layers[i].Mlp;
            foreach (var (name, module) in mlp.Projections().ToList())
                if (targets.Contains(name)) mlp.ReplaceProjection(name, Wrap(module, options, generator, $"model.layers.{i}.mlp.{name}"));
        }
        return Sites(model);
    }

    static LoraLinear Wrap(nn.Module<Tensor, Tensor> module, LoraOptions options, Generator? generator, string path) => module switch
    {
        FrozenLinear frozen => new LoraLinear(frozen, options, generator),
        _ => throw new InvalidOperationException($"{path}: cannot wrap a {module.GetType().Name} in LoRA"),
    };

    /// <summary>The adapters a model carries, in layer order (q, k, v, o, gate, up, down within a layer).</summary>
    public static IReadOnlyList<LoraSite> Sites(LlamaForCausalLM model)
    {
        var sites = new List<LoraSite>();
        var layers = model.Model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            foreach (var (name, module) in layers[i].SelfAttention.Projections())
                if (module is LoraLinear lora) sites.Add(new LoraSite($"model.layers.{i}.self_attn.{name}", lora));
            foreach (var (name, module) in layers[i].Mlp.Projections())
                if (module is LoraLinear lora) sites.Add(new LoraSite($"model.layers.{i}.mlp.{name}", lora));
        }
        return sites;
    }

    /// <summary>The trainable parameters: the adapters' A and B matrices.</summary>
    public static IEnumerable<TorchSharp.Modules.Parameter> TrainableParameters(LlamaForCausalLM model) =>
        Sites(model).SelectMany(s => new[] { s.Layer.LoraA, s.Layer.LoraB });

    /// <summary>Makes every adapter's dropout draw from <paramref name="generator"/> (see <see cref="LoraLinear.DropoutGenerator"/>).</summary>
    public static void SetDropoutGenerator(LlamaForCausalLM model, Generator generator)
    {
        foreach (var site in Sites(model)) site.Layer.DropoutGenerator = generator;
    }

    /// <summary>Turns every adapter on or off (off = the frozen base model, e.g. DPO's reference policy).</summary>
    public static void SetEnabled(LlamaForCausalLM model, bool enabled)
    {
        foreach (var site in Sites(model)) site.Layer.Enabled = enabled;
    }

    /// <summary>Folds every adapter's B·A·scaling into its base weight, in layer order (PEFT's merge).</summary>
    /// <exception cref="NotSupportedException">A base cannot take the merge (a quantised layer; the message says what
    /// to do instead).</exception>
    public static void MergeAll(LlamaForCausalLM model)
    {
        foreach (var site in Sites(model)) site.Layer.Merge();
    }

    /// <summary>Unmerges in reverse order, as PEFT undoes stacked merges.</summary>
    public static void UnmergeAll(LlamaForCausalLM model)
    {
        foreach (var site in Sites(model).Reverse()) site.Layer.Unmerge();
    }
}
