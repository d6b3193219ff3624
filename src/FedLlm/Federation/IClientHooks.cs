namespace FedLlm.Federation;

/// <summary>
/// The client side of a federated algorithm: what it changes in local training and what it sends back beside the
/// adapter (FedProx's proximal term; SCAFFOLD's drift correction and control-variate update). The server names the hooks
/// a round needs in <see cref="ClientInstructions.Hooks"/>; clients look them up in their <see cref="AlgorithmRegistry"/>.
/// </summary>
/// <remarks>
/// <para>One instance serves every client and round, in simulation and over the network: keep per-round data in the
/// <see cref="ClientRoundContext"/> and what must survive rounds in <see cref="ClientRoundContext.State"/>, which the
/// client commits with its checkpoints (crash-safe, resumable).</para>
/// <para>Implementations must be deterministic given the context, so that a resumed run and the network run equal the
/// simulation bit for bit.</para>
/// </remarks>
public interface IClientHooks
{
    /// <summary>The name servers use in <see cref="ClientInstructions.Hooks"/>.</summary>
    string Name { get; }

    /// <summary>Before the first local step: add loss terms and after-step actions through the context.</summary>
    void BeforeTraining(ClientRoundContext context);

    /// <summary>After the last local step (<see cref="ClientRoundContext.Local"/> holds y_i): add tensor sets and metrics
    /// to the update and update the client's state.</summary>
    void AfterTraining(ClientRoundContext context);
}
