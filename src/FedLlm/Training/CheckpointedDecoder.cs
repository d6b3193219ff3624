using FedLlm.Modeling;
using FedLlm.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>
/// Activation checkpointing per decoder layer (Chen et al., 2016, "Training Deep Nets with Sublinear Memory Cost";
/// transformers' gradient_checkpointing): the forward keeps only each layer's input, and backward recomputes one layer
/// at a time with autograd on, back-propagates through it and drops its activations before the next.
/// </summary>
/// <remarks>
/// <para>
/// Written as a manual two-pass, as <see cref="CausalLmStep"/> already does for the head, rather than a reentrant
/// autograd node: pass 1 runs the layers under no_grad and stores their inputs (L × B × T × H); pass 2 walks the layers
/// backwards, each time running <c>layer(input.requires_grad_())</c> and <c>output.backward(gradient)</c>, whose input
/// gradient feeds the layer below. The token embedding is frozen, so nothing flows below layer 0.
/// </para>
/// <para>
/// LoRA dropout draws from generators; the state of each is recorded before every layer in pass 1 and restored before
/// that layer's recomputation, so the masks (and the gradients) equal those without checkpointing, and the generators
/// end where they would have ended.
/// </para>
/// </remarks>
internal sealed class CheckpointedDecoder : IDisposable
{
    readonly LlamaForCausalLM model;
    readonly Tensor cos, sin;
    readonly Tensor? mask;
    readonly List<Tensor> layerInputs = new();
    readonly List<Tensor[]> generatorStates = new();
    readonly Generator[] generators;
    Tensor? lastHidden;

    CheckpointedDecoder(LlamaForCausalLM model, Tensor cos, Tensor sin, Tensor? mask, Generator[] generators)
    {
        this.model = model;
        this.cos = cos;
        this.sin = sin;
        this.mask = mask;
        this.generators = generators;
    }

    /// <summary>
    /// The final (normed) hidden states (B, T, H), in the graph. With <see cref="LlamaForCausalLM.ActivationCheckpointing"/>
    /// the graph stops at the last layer's output and the returned decoder must finish the backward pass
    /// (<see cref="Backward()"/>) after the caller's backward through the hidden states; otherwise the decoder is null.
    /// Every objective (instruction loss, DPO) runs its decoder through here, so checkpointing applies to all of them.
    /// </summary>
    public static (Tensor Hidden, CheckpointedDecoder? Decoder) HiddenStates(LlamaForCausalLM model, Tensor inputIds, Tensor? attentionMask)
    {
        if (!model.ActivationCheckpointing) return (model.HiddenStates(inputIds, attentionMask), null);
        var (decoder, last) = Forward(model, inputIds, attentionMask);
        decoder.lastHidden = last;
        return (model.Model.FinalNorm.forward(last), decoder);
    }

    /// <summary>Pass 2 from the gradient the caller's backward left on the last layer's output.</summary>
    public void Backward() => Backward(lastHidden!.grad!);

    /// <summary>Pass 1: returns the checkpoint and the last layer's output as a leaf that requires grad (B, T, H), before the final norm.</summary>
    public static (CheckpointedDecoder Decoder, Tensor LastHidden) Forward(LlamaForCausalLM model, Tensor inputIds, Tensor? attentionMask)
    {
        var (cos, sin, mask) = model.AttentionInputs(inputIds, attentionMask);
        var sites = LoraInjector.Sites(model);
        // A site without a generator would create one lazily (seeded 0) on first use; create it now so its state can be recorded.
        foreach (var site in sites) site.Layer.DropoutGenerator ??= new Generator(0, model.Device);
        var generators = sites.Select(s => s.Layer.DropoutGenerator!).Distinct().ToArray();
        var decoder = new CheckpointedDecoder(model, cos, sin, mask, generators);
        using var noGrad = no_grad();
        Tensor h = model.Model.EmbedTokens.forward(inputIds);                    // (B, T, H)
        foreach (var layer in model.Model.Layers)
        {
            decoder.layerInputs.Add(h);
            decoder.generatorStates.Add(generators.Select(g => g.get_state()).ToArray());
            h = layer.Forward(h, cos, sin, mask, cache: null);
        }
        return (decoder, h.requires_grad_(true));
    }

    /// <summary>Pass 2: back-propagates <paramref name="lastHiddenGradient"/> (∂L/∂ last layer output) through every layer.</summary>
    public void Backward(Tensor lastHiddenGradient)
    {
        var endStates = generators.Select(g => g.get_state()).ToArray();
        var layers = model.Model.Layers;
        Tensor gradient = lastHiddenGradient;
        for (int i = layers.Count - 1; i >= 0; i--)
        {
            using var scope = NewDisposeScope();
            for (int k = 0; k < generators.Length; k++) generators[k].set_state(generatorStates[i][k]);
            var input = layerInputs[i].detach().requires_grad_(i > 0); // layer 0's input (the frozen embedding) needs no gradient
            var output = layers[i].Forward(input, cos, sin, mask, cache: null);
            output.backward(new[] { gradient });
            gradient = i > 0 ? input.grad!.MoveToOuterDisposeScope() : gradient;
        }
        for (int k = 0; k < generators.Length; k++) generators[k].set_state(endStates[k]);
        foreach (var state in endStates) state.Dispose();
    }

    public void Dispose()
    {
        foreach (var t in layerInputs) t.Dispose();
        foreach (var states in generatorStates) foreach (var s in states) s.Dispose();
        cos.Dispose();
        sin.Dispose();
        mask?.Dispose();
    }
}
