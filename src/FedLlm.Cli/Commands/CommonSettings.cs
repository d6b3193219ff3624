using FedLlm.Configuration;
using System.ComponentModel;
using FedLlm.Modeling;
using FedLlm.Quantization;
using FedLlm.Runtime;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Commands;

/// <summary>Options every command shares: where the model lives, which device and how many threads.</summary>
public class CommonSettings : CommandSettings
{
    [CommandOption("--model <DIR>")]
    [Description("Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files). Default: the embedded default model.")]
    public string? Model { get; init; }

    [CommandOption("--device <DEVICE>")]
    [OneOf("cpu", "cuda", OpenPrefix = "cuda:")]
    [Description("cpu, cuda or cuda:N (CUDA needs a CUDA build of libtorch).")]
    [DefaultValue("cpu")]
    public string Device { get; init; } = "cpu";

    [CommandOption("--threads <N>")]
    [Check(ValueRule.Positive)]
    [Description("Intra-op threads. Default: all cores.")]
    public int? Threads { get; init; }

    [CommandOption("--seed <N>")]
    [Description("Seed of LoRA initialisation, data order, dropout and sampling.")]
    [DefaultValue(2023L)]
    public long Seed { get; init; } = 2023;

    [CommandOption("--base-dtype <DTYPE>")]
    [OneOf("fp32", "bf16", "int8", "nf4", Aliases = ["float32", "bfloat16"])]
    [Description("How the frozen base weights are stored and multiplied: fp32, bf16, int8 or nf4 (int8/nf4 compute in bf16). LoRA stays fp32.")]
    [DefaultValue("fp32")]
    public string BaseDtype { get; init; } = "fp32";

    [CommandOption("--activation-checkpointing")]
    [Description("Recompute each decoder layer's activations during backward: less memory, about one more forward pass of time.")]
    public bool ActivationCheckpointing { get; init; }

    public void ApplyRuntime() => TorchRuntime.ConfigureThreads(Threads);

    /// <summary>The base precision of --base-dtype; throws naming the flag on a bad value.</summary>
    public BaseWeights BaseWeights() => Quantization.BaseWeights.Parse(BaseDtype);

    /// <summary>Loads the model as --base-dtype and --activation-checkpointing say: the one call every command uses.</summary>
    public LlamaForCausalLM LoadModel(string modelDir, TorchSharp.torch.Device device)
    {
        var model = ModelLoader.Load(modelDir, BaseWeights(), device);
        model.ActivationCheckpointing = ActivationCheckpointing;
        return model;
    }
}
