using FedLlm.Federation;
using FedLlm.Federation.Validation;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>
/// The content checks of an arriving update, after the transport's own (round, sender, size): the library's
/// <see cref="UpdateValidator"/> (names, shapes, dtypes, finite values, norm bound, example count), plus SCAFFOLD's
/// need for a control delta, which only the round's plan knows about.
/// </summary>
public static class UpdateScreen
{
    /// <summary>Null when the update may be aggregated, else the reason it may not.</summary>
    public static string? Check(IReadOnlyDictionary<string, Tensor> global, ClientUpdate update, bool requireControlDelta, UpdateLimits limits)
    {
        if (requireControlDelta && (update.ControlDelta is null || update.ControlDelta.Count == 0))
            return $"{update.ClientId}: a SCAFFOLD round needs a control delta, and none was sent";
        var verdict = UpdateValidator.Validate(global, update, limits);
        return verdict.Accepted ? null : verdict.Reason;
    }
}
