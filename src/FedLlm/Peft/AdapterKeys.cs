using FedLlm.Modeling;
using TorchSharp.Modules;

namespace FedLlm.Peft;

/// <summary>
/// The one place that names adapter parameters: PEFT's file keys, such as
/// <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c>. Adapter files, federated updates, the trainer's
/// optimizer state and checkpoints all use these keys, so a tensor has the same name wherever it travels.
/// </summary>
public static class AdapterKeys
{
    /// <summary>What PEFT puts before the model's own module path.</summary>
    public const string Prefix = "base_model.model.";

    /// <summary>The PEFT key of one side ("lora_A" or "lora_B") of the adapter at <paramref name="modulePath"/>.</summary>
    public static string Of(string modulePath, string side) => $"{Prefix}{modulePath}.{side}.weight";

    /// <summary>The trainable adapter parameters with their PEFT keys, in layer order and A before B within a site.</summary>
    /// <remarks>The order is the one the optimizer and gradient clipping walk; it fixes the float summation order of the
    /// gradient norm, so it must not change between runs that should agree bit for bit.</remarks>
    public static IReadOnlyList<(string Key, Parameter Parameter)> Parameters(LlamaForCausalLM model) =>
        LoraInjector.Sites(model)
            .SelectMany(s => new[] { (Of(s.ModulePath, "lora_A"), s.Layer.LoraA), (Of(s.ModulePath, "lora_B"), s.Layer.LoraB) })
            .ToList();

    /// <summary>
    /// The key an older checkpoint or client state used for optimizer moments (the module path without PEFT's prefix),
    /// or null when <paramref name="key"/> is not a PEFT key.
    /// </summary>
    public static string? ModulePathKey(string key) => key.StartsWith(Prefix, StringComparison.Ordinal) ? key[Prefix.Length..] : null;
}
