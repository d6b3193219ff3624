using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using FedLlm.Network.Transfer;
using Prometheus;

namespace FedLlm.Network.Server;

/// <summary>TLS for the listener: per connection, the handshake options (server certificate, whether client certificates
/// are required, how they are checked), given where to report a refused client certificate.</summary>
public sealed record ServerTls(Func<Action<string>, SslServerAuthenticationOptions> ForConnection);

/// <summary>What a server adds to the federation service: the operator's controls, metrics, where refusals go.</summary>
public sealed record FederationHostExtras
{
    /// <summary>Who may call the admin service; null = no admin service.</summary>
    public IAdminAuthenticator? Admin { get; init; }
    /// <summary>Where stop requests (signals, the admin's stop) arrive; the server subscribes once it runs.</summary>
    public StopRequests Stop { get; init; } = new();
    /// <summary>Prometheus metrics to update; null = none kept.</summary>
    public ServerMetrics? Metrics { get; init; }

    /// <summary>HOST:PORT for Prometheus' plain-HTTP /metrics; null = not served.</summary>
    public string? MetricsListen { get; init; }

    /// <summary>Where refused connections and calls are logged; null = the console, like every server log line.</summary>
    public ILogger? RefusalLogger { get; init; }

    /// <summary>The open secure-aggregation round, shared with the round loop's <see cref="SecureRemoteClients"/>; a
    /// server without secure aggregation keeps an empty one (every exchange is refused).</summary>
    public SecAggSessions SecAgg { get; init; } = new();
}

/// <summary>
/// Kestrel serving <see cref="FederationService"/> (and <see cref="AdminService"/>, the gRPC health service) over HTTP/2:
/// with TLS, or h2c when <see cref="StartAsync"/> is given no TLS options. Connections that cannot be gRPC (plain text on the TLS port,
/// TLS on the h2c port, HTTP/1.1) and refused client certificates are logged by <see cref="RefusalLog"/>.
/// </summary>
public sealed class FederationHost : IAsyncDisposable
{
    readonly WebApplication app;

    FederationHost(WebApplication app, string address, RefusalLog refusals)
    {
        this.app = app;
        Address = address;
        Refusals = refusals;
    }

    /// <summary>The bound address, e.g. https://127.0.0.1:50443 (the real port when 0 was asked for).</summary>
    public string Address { get; }

    /// <summary>The log of refused connections and calls, shared with the services.</summary>
    public RefusalLog Refusals { get; }

    /// <param name="listen">HOST:PORT; port 0 picks a free one.</param>
    /// <param name="tls">The server certificate and client-certificate policy, or null for plain-text h2c (--insecure
    /// only).</param>
    /// <param name="clients">The networked clients' registry the federation service hands tasks from and delivers
    /// updates to.</param>
    /// <param name="run">What joining clients are told about the run (id, task, training settings).</param>
    /// <param name="authenticator">Who the calling client is, for every RPC.</param>
    /// <param name="progress">The next round and the last round's metrics, for status replies.</param>
    /// <param name="cancellationToken">Cancels the start-up.</param>
    /// <param name="extras">Admin service, stop requests, metrics and refusal logging; null = none of them.</param>
    public static async Task<FederationHost> StartAsync(string listen, ServerTls? tls, RemoteClients clients, RunDescription run, IClientAuthenticator authenticator,
        Func<(int NextRound, string? LastMetrics)> progress, CancellationToken cancellationToken = default, FederationHostExtras? extras = null)
    {
        extras ??= new FederationHostExtras();
        var endpoint = ParseListen(listen);
        var metricsEndpoint = extras.MetricsListen is { } m ? ParseListen(m) : null;
        if (metricsEndpoint is { Port: 0 }) throw new ArgumentException($"metrics_listen '{extras.MetricsListen}' needs a fixed port (e.g. 127.0.0.1:9464)");
        var builder = WebApplication.CreateSlimBuilder();
        FedLlmLogging.Configure(builder.Logging);
        // The server process owns SIGTERM/SIGINT (it finishes or abandons the round and commits first); the host's
        // console lifetime would take them and stop only the listener.
        builder.Services.AddSingleton<IHostLifetime, ProcessOwnsSignals>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        var refusals = new RefusalLog(extras.RefusalLogger ?? LoggerFactory.Create(FedLlmLogging.Configure).CreateLogger("FedLlm.Server.Refusals"), extras.Metrics);
        // Bulk connections are served by the federation service, which the app's container builds once it exists.
        IServiceProvider? services = null;
        Func<FederationService>? bulkService = run.BulkTransfer ? () => ActivatorUtilities.CreateInstance<FederationService>(services!) : null;
        // Each receive goes straight into a pool buffer instead of first waiting for data with a zero-byte receive: one
        // system call per read instead of two on an upload, for a few KiB held per idle connection (a federation has few).
        builder.WebHost.UseSockets(sockets => sockets.WaitForDataBeforeAllocatingBuffer = false);
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
                options.Use(next => connection => ScreenFirstBytes(connection, next, tls is not null, refusals, bulkService));
                if (tls is null) return;
                // The kit's own handshake options (certificate context, client certificate check, ALPN h2), used as given.
                options.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = context =>
                    {
                        var connection = context.Connection;
                        string peer = connection.RemoteEndPoint?.ToString() ?? "unknown peer";
                        var handshake = tls.ForConnection(reason =>
                        {
                            connection.Items[CertificateRefusedKey] = true;
                            refusals.Refused("certificate", peer, reason);
                        });
                        if (bulkService is not null)
                            handshake.ApplicationProtocols = [.. handshake.ApplicationProtocols ?? [SslApplicationProtocol.Http2], BulkFrames.ApplicationProtocol];
                        return ValueTask.FromResult(handshake);
                    },
                });
                options.Use(next => connection => RequireHttp2(connection, next, refusals, bulkService));
            });
            if (metricsEndpoint is not null) kestrel.Listen(metricsEndpoint, options => options.Protocols = HttpProtocols.Http1);
        });
        builder.Services.AddGrpc(o =>
        {
            // A chunk of 1 MiB plus its header; an update header with more metrics than this is refused unread.
            o.MaxReceiveMessageSize = 4 << 20;
            o.EnableDetailedErrors = true;
        });
        // grpc.health.v1 for load balancers and probes: the whole server ("") and fedllm.federation.v2.Federation are
        // SERVING while the server admits clients, NOT_SERVING once it is stopping.
        builder.Services.AddGrpcHealthChecks(o =>
        {
            o.Services.Map("", _ => true);
            o.Services.Map("fedllm.federation.v2.Federation", _ => true);
        }).AddCheck("federation", () => clients.StopReason is { } stopping
            ? Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Unhealthy($"stopping: {stopping}")
            : Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy());
        builder.Services.AddSingleton(clients);
        builder.Services.AddSingleton(run);
        builder.Services.AddSingleton(authenticator);
        builder.Services.AddSingleton(progress);
        builder.Services.AddSingleton(refusals);
        builder.Services.AddSingleton(extras.Stop);
        builder.Services.AddSingleton(extras.SecAgg);
        if (extras.Admin is not null) builder.Services.AddSingleton(extras.Admin);
        var app = builder.Build();
        services = app.Services;
        if (metricsEndpoint is not null && extras.Metrics is { } metrics)
        {
            int port = metricsEndpoint.Port;
            app.Use(async (HttpContext context, RequestDelegate next) =>
            {
                if (context.Connection.LocalPort != port)
                {
                    await next(context);
                    return;
                }
                if (context.Request.Path != "/metrics")
                {
                    context.Response.StatusCode = StatusCodes.Status404NotFound;
                    return;
                }
                context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                await metrics.Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted);
            });
        }
        app.MapGrpcService<FederationService>();
        app.MapGrpcService<SecAggService>();
        if (extras.Admin is not null) app.MapGrpcService<AdminService>();
        app.MapGrpcHealthChecksService();
        await app.StartAsync(cancellationToken);
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .First(a => metricsEndpoint is null || !a.EndsWith($":{metricsEndpoint.Port}", StringComparison.Ordinal));
        return new FederationHost(app, address, refusals);
    }

    const string CertificateRefusedKey = "fedllm.certificate-refused";
    const string ReachedHttp2Key = "fedllm.tls-done";
    static readonly byte[] Http2Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0");

    /// <summary>Refuses, with a log line, a connection whose first bytes are not what the port speaks: a TLS record
    /// (0x16) on a TLS port, the HTTP/2 preface on an h2c port. After the TLS middleware has run, a connection that never
    /// reached HTTP/2 and whose certificate was not refused failed its handshake for another reason (the client
    /// refused our certificate, or spoke an old TLS), logged too.</summary>
    static async Task ScreenFirstBytes(ConnectionContext connection, ConnectionDelegate next, bool tls, RefusalLog refusals, Func<FederationService>? bulkService)
    {
        string peer = connection.RemoteEndPoint?.ToString() ?? "unknown peer";
        var input = connection.Transport.Input;
        // Enough bytes to tell the HTTP/2 preface from HTTP/1 (TCP may deliver fewer at first): look, ask for more.
        ReadOnlySequence<byte> buffer;
        while (true)
        {
            ReadResult read;
            try
            {
                read = await input.ReadAsync(connection.ConnectionClosed);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ConnectionResetException)
            {
                return;
            }
            buffer = read.Buffer;
            bool enough = buffer.Length >= Http2Preface.Length || (!buffer.IsEmpty && (tls || buffer.FirstSpan[0] == 0x16));
            if (enough) break;
            if (read.IsCompleted || read.IsCanceled)
            {
                input.AdvanceTo(buffer.Start);
                return;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
        byte first = buffer.FirstSpan[0];
        if (!tls && bulkService is not null && StartsWith(buffer, BulkFrames.Preface))
        {
            input.AdvanceTo(buffer.Start);
            // An --insecure server's bulk connection: no TLS, so no ALPN; the preface alone routes it.
            await using var plain = new DuplexPipeStream(connection.Transport);
            await bulkService().ServeBulkAsync(plain, null, peer, connection.ConnectionClosed);
            return;
        }
        bool preface = StartsWith(buffer, Http2Preface);
        bool looksHttp1 = !preface && first is >= (byte)'A' and <= (byte)'Z';
        input.AdvanceTo(buffer.Start); // only looked: the next reader sees every byte
        string? problem = tls
            ? first == 0x16 ? null : looksHttp1 || preface ? "plain-text HTTP on the TLS port (use https:// and a kit, or a server started with --insecure)"
                : "bytes that are not a TLS handshake on the TLS port"
            : first == 0x16 ? "a TLS handshake on a plain-text (--insecure) port (use http://, or start the server with TLS)"
            : preface ? null
            : looksHttp1 ? "HTTP/1.x on the gRPC port (gRPC needs HTTP/2)" : "bytes that are not HTTP/2 on the h2c port";
        if (problem is not null)
        {
            refusals.Refused(tls ? "plaintext" : "protocol", peer, problem);
            connection.Abort(new ConnectionAbortedException(problem));
            return;
        }
        await next(connection);
        if (tls && !connection.Items.ContainsKey(ReachedHttp2Key) && !connection.Items.ContainsKey(CertificateRefusedKey))
            refusals.Refused("handshake", peer, "the TLS handshake failed (the client refused this server's certificate, offered no common TLS version, or hung up)");
    }

    static bool StartsWith(ReadOnlySequence<byte> buffer, ReadOnlySpan<byte> prefix)
    {
        if (buffer.Length < prefix.Length) return false;
        Span<byte> head = stackalloc byte[prefix.Length];
        buffer.Slice(0, prefix.Length).CopyTo(head);
        return head.SequenceEqual(prefix);
    }

    /// <summary>After TLS: gRPC needs HTTP/2 chosen by ALPN; an HTTP/1.1 client is refused with a log line; a
    /// connection that chose the bulk channel is served here, on the TLS stream itself.</summary>
    static Task RequireHttp2(ConnectionContext connection, ConnectionDelegate next, RefusalLog refusals, Func<FederationService>? bulkService)
    {
        connection.Items[ReachedHttp2Key] = true;
        var protocol = connection.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ITlsApplicationProtocolFeature>()?.ApplicationProtocol ?? ReadOnlyMemory<byte>.Empty;
        if (bulkService is not null && protocol.Span.SequenceEqual(BulkFrames.ApplicationProtocol.Protocol.Span))
        {
            // Read and written on the SslStream directly, not through the connection's pipes: the bytes of a tensor then
            // go from the decryption straight into its memory.
            var tlsStream = connection.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()!.SslStream;
            var certificate = connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate;
            return bulkService().ServeBulkAsync(tlsStream, certificate, connection.RemoteEndPoint?.ToString() ?? "unknown peer", connection.ConnectionClosed);
        }
        if (!protocol.Span.SequenceEqual(SslApplicationProtocol.Http2.Protocol.Span))
        {
            string offered = protocol.IsEmpty ? "no ALPN protocol" : Encoding.ASCII.GetString(protocol.Span);
            string problem = $"TLS client negotiated {offered}; gRPC needs HTTP/2 (h2)";
            refusals.Refused("protocol", connection.RemoteEndPoint?.ToString(), problem);
            connection.Abort(new ConnectionAbortedException(problem));
            return Task.CompletedTask;
        }
        return next(connection);
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

    /// <summary>Stops Kestrel (letting calls in flight end) and frees the host.</summary>
    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    /// <summary>A host lifetime that leaves process signals alone.</summary>
    sealed class ProcessOwnsSignals : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>A stream over a connection's pipes (reads from its input, writes to its output), for a bulk connection on
    /// an --insecure port.</summary>
    sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
    {
        readonly Stream reader = pipe.Input.AsStream(leaveOpen: true);
        readonly Stream writer = pipe.Output.AsStream(leaveOpen: true);

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => reader.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => reader.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => reader.ReadAsync(buffer, offset, count, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => writer.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => writer.WriteAsync(buffer, cancellationToken);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => writer.WriteAsync(buffer, offset, count, cancellationToken);
        public override void Flush() => writer.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => writer.FlushAsync(cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override async ValueTask DisposeAsync()
        {
            await reader.DisposeAsync();
            await writer.DisposeAsync();
            await base.DisposeAsync();
        }
    }
}
