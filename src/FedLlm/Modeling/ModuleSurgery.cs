using TorchSharp;

namespace FedLlm.Modeling;

/// <summary>Replaces a registered child module in place, as PEFT does when it wraps a layer.</summary>
internal static class ModuleSurgery
{
    public static void Reregister(torch.nn.Module parent, string name, torch.nn.Module replacement)
    {
        // TorchSharp refuses to register a name twice; registering null removes the old entry first.
        parent.register_module(name, null!);
        parent.register_module(name, replacement);
    }
}
