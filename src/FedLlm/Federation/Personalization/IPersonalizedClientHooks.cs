using static TorchSharp.torch;

namespace FedLlm.Federation.Personalization;

/// <summary>Client hooks of an algorithm that leaves each client a personal adapter beside the global one (a split
/// adapter's personal half, Ditto's v), kept in the client's <see cref="ClientState"/>.</summary>
public interface IPersonalizedClientHooks : IClientHooks
{
    /// <summary>The client's personal adapter given the final <paramref name="global"/> and the client's
    /// <paramref name="state"/>, in the global's layout and owned by the caller; null when the client holds none yet
    /// (it never trained), in which case it would use the global one.</summary>
    Dictionary<string, Tensor>? PersonalAdapter(IReadOnlyDictionary<string, Tensor> global, ClientState state);
}
