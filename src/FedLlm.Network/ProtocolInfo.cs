using FedLlm.Network.Protocol;

namespace FedLlm.Network;

/// <summary>The version of federation.proto this build speaks, and the metadata keys beside the messages.</summary>
public static class ProtocolInfo
{
    /// <summary>Bumped on any change an older peer would misread; the package name fedllm.federation.v2 carries it too.</summary>
    public const uint Major = 2;

    /// <summary>Bumped when fields are only added (older peers ignore them).</summary>
    public const uint Minor = 4;

    /// <summary>Insecure mode only: the client id the caller claims (with TLS the id comes from its certificate or token).</summary>
    public const string ClientIdHeader = "fedllm-client-id";

    /// <summary>A per-client token, checked against the server's stored hashes.</summary>
    public const string TokenHeader = "fedllm-token";

    /// <summary>This build's version, as a client states it in its join request.</summary>
    public static ProtocolVersion Current => new() { Major = Major, Minor = Minor };

    /// <summary>Null when <paramref name="peer"/> can talk to this build, else why not.</summary>
    public static string? Incompatibility(ProtocolVersion? peer)
    {
        if (peer is null) return $"the client sent no protocol version; this server speaks fedllm.federation v{Major}.{Minor}";
        return peer.Major == Major ? null
            : $"the client speaks fedllm.federation v{peer.Major}.{peer.Minor}, this server v{Major}.{Minor}; run the same major version of FedLlm on both sides";
    }
}
