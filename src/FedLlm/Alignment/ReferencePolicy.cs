using FedLlm.Modeling;
using FedLlm.Peft;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// DPO's reference policy π_ref, evaluated on the policy model itself rather than on a second copy of the base: either
/// the base model (every adapter switched off, TRL's choice when the policy is a PEFT model) or a frozen adapter state,
/// e.g. the SFT adapter DPO starts from, swapped in for the reference pass and swapped back afterwards.
/// </summary>
/// <remarks>Not thread-safe: a reference pass temporarily changes the model it runs on.</remarks>
public sealed class ReferencePolicy : IDisposable
{
    private readonly Dictionary<string, Tensor>? adapterState;

    ReferencePolicy(Dictionary<string, Tensor>? adapterState) => this.adapterState = adapterState;

    /// <summary>The base model: adapters off.</summary>
    public static ReferencePolicy BaseModel() => new(null);

    /// <summary>
    /// A frozen adapter, keyed as <see cref="AdapterIO.State"/> keys it (PEFT file names). The tensors are copied, so the
    /// caller may go on training or dispose the originals.
    /// </summary>
    public static ReferencePolicy FromAdapterState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count == 0) throw new ArgumentException("the reference adapter state is empty", nameof(state));
        using var noGrad = no_grad();
        return new(state.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope(), StringComparer.Ordinal));
    }

    /// <summary>True when the reference is the base model with its adapters off.</summary>
    public bool IsBaseModel => adapterState is null;

    /// <summary>
    /// Runs <paramref name="pass"/> with the model turned into the reference policy (eval mode, no gradients), then puts
    /// adapters, their weights and the train/eval mode back as they were, also when the pass throws.
    /// </summary>
    /// <exception cref="InvalidOperationException">An adapter is merged into its base weight (switching it off would not
    /// remove it), or the reference state does not fit the model's adapters.</exception>
    public T Run<T>(LlamaForCausalLM model, Func<T> pass)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pass);
        var sites = LoraInjector.Sites(model);
        if (sites.Any(s => s.Layer.Merged))
            throw new InvalidOperationException("an adapter is merged into the base weights; unmerge before computing reference log-probabilities");
        if (adapterState is not null && sites.Count == 0)
            throw new InvalidOperationException("a reference adapter state was given but the model carries no adapters");
        var enabled = sites.Select(s => s.Layer.Enabled).ToList();
        bool wasTraining = model.training;
        Dictionary<string, Tensor>? saved = null;
        using var noGrad = no_grad();
        try
        {
            model.eval(); // no dropout: the reference must be one fixed function of the input
            if (adapterState is null) LoraInjector.SetEnabled(model, false);
            else
            {
                var live = AdapterIO.State(model);
                CheckFits(live);
                saved = live.ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope(), StringComparer.Ordinal);
                foreach (var (key, parameter) in live) parameter.copy_(adapterState[key]);
                LoraInjector.SetEnabled(model, true);
            }
            return pass();
        }
        finally
        {
            if (saved is not null)
            {
                foreach (var (key, parameter) in AdapterIO.State(model)) parameter.copy_(saved[key]);
                foreach (var tensor in saved.Values) tensor.Dispose();
            }
            for (int i = 0; i < sites.Count; i++) sites[i].Layer.Enabled = enabled[i];
            if (wasTraining) model.train();
        }
    }

    void CheckFits(IReadOnlyDictionary<string, Tensor> live)
    {
        var missing = live.Keys.Where(k => !adapterState!.ContainsKey(k)).ToList();
        var extra = adapterState!.Keys.Where(k => !live.ContainsKey(k)).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new InvalidOperationException($"the reference adapter does not fit the model: {missing.Count} missing (e.g. '{missing.FirstOrDefault()}'), " +
                $"{extra.Count} unexpected (e.g. '{extra.FirstOrDefault()}')");
        foreach (var (key, tensor) in live)
            if (!tensor.shape.SequenceEqual(adapterState[key].shape))
                throw new InvalidOperationException($"reference adapter '{key}' has shape [{string.Join(",", adapterState[key].shape)}], the model's is [{string.Join(",", tensor.shape)}]");
    }

    /// <summary>Frees the copied adapter state.</summary>
    public void Dispose()
    {
        if (adapterState is null) return;
        foreach (var tensor in adapterState.Values) tensor.Dispose();
        adapterState.Clear();
    }
}
