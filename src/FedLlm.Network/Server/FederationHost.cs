using System.Net;
using System.Net.Security;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FedLlm.Network.Server;

/// <summary>TLS for the listener: the server's certificate, whether client certificates are required, and how they are checked.</summary>
public sealed record ServerTls(SslServerAuthenticationOptions Options);

/// <summary>Kestrel serving <see cref="FederationService"/> over HTTP/2: with TLS, or h2c when <paramref name="tls"/> is null.</summary>
public sealed class FederationHost : IAsyncDisposable
{
    readonly WebApplication app;

    FederationHost(WebApplication app, string address)
    {
        this.app = app;
        Address = address;
    }

    /// <summary>The bound address, e.g. https://127.0.0.1:50443 (the real port when 0 was asked for).</summary>
    public string Address { get; }

    /// <param name="listen">HOST:PORT; port 0 picks a free one.</param>
    public static async Task<FederationHost> StartAsync(string listen, ServerTls? tls, RemoteClients clients, RunDescription run, IClientAuthenticator authenticator,
        Func<(int NextRound, string? LastMetrics)> progress, CancellationToken cancellationToken = default)
    {
        var endpoint = ParseListen(listen);
        var builder = WebApplication.CreateSlimBuilder();
        FedLlmLogging.Configure(builder.Logging);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Large flow-control windows keep a fast link busy while 1 MiB chunks stream (the defaults, under 1 MiB, stall it).
            kestrel.Limits.Http2.InitialConnectionWindowSize = 32 << 20;
            kestrel.Limits.Http2.InitialStreamWindowSize = 16 << 20;
            kestrel.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
            // Frames and pipe buffers sized for 1 MiB chunks: with the defaults (16 KiB frames, 64 KiB response buffer)
            // a streamed adapter stalls on every chunk.
            kestrel.Limits.Http2.MaxFrameSize = 1 << 20;
            kestrel.Limits.MaxResponseBufferSize = 8 << 20;
            kestrel.Limits.MaxRequestBufferSize = 32 << 20;
            kestrel.Listen(endpoint, options =>
            {
                options.Protocols = HttpProtocols.Http2;
                if (tls is null) return;
                // The kit's own handshake options (certificate context, client certificate check, ALPN h2), used as given.
                options.UseHttps(new TlsHandshakeCallbackOptions { OnConnection = _ => ValueTask.FromResult(tls.Options) });
            });
        });
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = 4 << 20;
            o.EnableDetailedErrors = true;
        });
        builder.Services.AddSingleton(clients);
        builder.Services.AddSingleton(run);
        builder.Services.AddSingleton(authenticator);
        builder.Services.AddSingleton(progress);
        var app = builder.Build();
        app.MapGrpcService<FederationService>();
        await app.StartAsync(cancellationToken);
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new FederationHost(app, address);
    }

    static IPEndPoint ParseListen(string listen)
    {
        string text = listen.Trim();
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], out int port) || port < 0 || port > 65535)
            throw new ArgumentException($"listen address '{listen}' must look like HOST:PORT (e.g. 0.0.0.0:50443)");
        string host = text[..colon].Trim('[', ']');
        IPAddress ip = host is "localhost" ? IPAddress.Loopback
            : host is "*" or "" ? IPAddress.Any
            : IPAddress.TryParse(host, out var parsed) ? parsed
            : throw new ArgumentException($"listen address '{listen}': '{host}' is not an IP address (use 0.0.0.0 for all interfaces)");
        return new IPEndPoint(ip, port);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
