using FedLlm.Federation;
using FedLlm.Federation.Validation;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The content checks of an arriving update, after the transport's own (round, sender, size): the library's
/// <see cref="UpdateValidator"/> (names, shapes, dtypes, finite values, norm bound, example count), plus the tensor sets
/// the round's instructions ask back (SCAFFOLD's control delta), which only the instructions know about.
/// </summary>
public static class UpdateScreen
{
    /// <summary>Whether the update may be aggregated, and if not why; an accepted verdict carries ‖y − x‖₂.</summary>
    public static UpdateVerdict Check(IReadOnlyDictionary<string, Tensor> global, ClientUpdate update, IReadOnlyList<string> returnedTensorSets, UpdateLimits limits)
    {
        foreach (var name in returnedTensorSets)
            if (update.TensorSet(name) is not { Count: > 0 })
                return UpdateVerdict.Reject($"{update.ClientId}: this round needs the tensor set '{name}' back, and none was sent");
        foreach (var name in update.TensorSets.Keys)
            if (!returnedTensorSets.Contains(name))
                return UpdateVerdict.Reject($"{update.ClientId}: tensor set '{name}' was not asked for in this round");
        return UpdateValidator.Validate(global, update, limits);
    }
}
