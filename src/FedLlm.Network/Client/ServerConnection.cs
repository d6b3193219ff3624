using Grpc.Core;
using Grpc.Net.Client;

namespace FedLlm.Network.Client;

/// <summary>How a client reaches the server: address, its id, and the credentials it presents.</summary>
/// <param name="Insecure">Plain-text HTTP/2 (h2c) to an http:// address; only with an explicit --insecure.</param>
/// <param name="Token">A per-client token sent in metadata, or null.</param>
/// <param name="Handler">The TLS-configured handler (client certificate, pinned CA), or null for the default.</param>
/// <param name="Tls">What the handler's certificate check found, for telling a refused server from an unreachable one.</param>
/// <param name="Address">The server's URL, https://HOST:PORT (http:// only with <paramref name="Insecure"/>).</param>
/// <param name="ClientId">This client's roster id, sent with every call and checked against its certificate or
/// token.</param>
public sealed record ServerConnection(string Address, string ClientId, bool Insecure, string? Token = null, Func<HttpMessageHandler>? Handler = null,
    TlsDiagnostics? Tls = null)
{
    /// <summary>The TLS options of a bulk-channel connection (<see cref="BulkClient"/>): the same client certificate and
    /// pinned CA as <see cref="Handler"/>'s; null = no bulk channel over TLS (the gRPC calls carry everything).</summary>
    public Func<System.Net.Security.SslClientAuthenticationOptions>? BulkTls { get; init; }

    /// <summary>HTTP/2 flow-control windows large enough that a 1 MiB chunk never waits for a window update.</summary>
    public const int StreamWindowBytes = 16 << 20;

    /// <summary>Checks the address against the security mode.</summary>
    /// <exception cref="ArgumentException">The address is not an http(s) URL, is http without --insecure, or https with
    /// it.</exception>
    public void Validate()
    {
        if (!Uri.TryCreate(Address, UriKind.Absolute, out var uri) || (uri.Scheme != "https" && uri.Scheme != "http"))
            throw new ArgumentException($"server address '{Address}' must look like https://HOST:PORT");
        if (uri.Scheme == "http" && !Insecure)
            throw new ArgumentException($"server address '{Address}' is plain http; use https, or pass --insecure to send updates unencrypted");
        if (uri.Scheme == "https" && Insecure)
            throw new ArgumentException($"--insecure speaks plain HTTP/2; use an http:// address, not '{Address}'");
    }

    /// <summary>Opens a gRPC channel to the server (validating first), with HTTP/2 keep-alive pings and flow-control
    /// windows sized for 1 MiB tensor chunks. The caller owns and disposes the channel.</summary>
    public GrpcChannel Open()
    {
        Validate();
        var handler = Handler?.Invoke() ?? new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            InitialHttp2StreamWindowSize = StreamWindowBytes,
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
        };
        return GrpcChannel.ForAddress(Address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 4 << 20,
        });
    }

    /// <summary>Metadata on every call: the claimed id (checked against the certificate or token) and the token.</summary>
    public Metadata Headers()
    {
        var headers = new Metadata { { ProtocolInfo.ClientIdHeader, ClientId } };
        if (Token is not null) headers.Add(ProtocolInfo.TokenHeader, Token);
        return headers;
    }
}

/// <summary>The last reason this client refused the server's certificate (set by the TLS callback).</summary>
public sealed class TlsDiagnostics
{
    volatile string? serverRejected;

    /// <summary>Why this client last refused the server's certificate, or null when it has not (or since <see
    /// cref="Clear"/>).</summary>
    public string? ServerRejectedReason => serverRejected;

    /// <summary>Records that the server's certificate was refused and why (called from the TLS validation
    /// callback).</summary>
    public void ServerRejected(string reason) => serverRejected = reason;

    /// <summary>Forgets the last refusal, before a new connection attempt.</summary>
    public void Clear() => serverRejected = null;
}
