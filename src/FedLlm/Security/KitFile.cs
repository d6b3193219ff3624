namespace FedLlm.Security;

/// <summary>One file a provisioning step wrote or changed.</summary>
/// <param name="Path">Where it is.</param>
/// <param name="Purpose">What it is for, in a few words.</param>
/// <param name="Secret">Private key or token: owner-only permissions, must not leave its participant.</param>
public sealed record KitFile(string Path, string Purpose, bool Secret = false);
