using System.Security.Cryptography;

namespace FedLlm.Network;

/// <summary>
/// Identifies a base model by the SHA-256 of its config.json: a client whose base differs (another size, vocabulary or
/// family) would train an adapter that does not fit the server's, so the handshake refuses it.
/// </summary>
public static class ModelFingerprint
{
    public static string Of(string modelDirectory)
    {
        string config = Path.Combine(modelDirectory, "config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"{config}: the model folder has no config.json", config);
        return Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(config)));
    }
}
