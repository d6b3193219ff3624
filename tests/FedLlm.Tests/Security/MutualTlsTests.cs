using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using FedLlm.Security;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Security;

/// <summary>Real TLS handshakes on 127.0.0.1 with the kit's options on both sides (SslStream, as Kestrel and
/// SocketsHttpHandler use underneath).</summary>
public class MutualTlsTests : IDisposable
{
    readonly TempDirectory dir = new();
    readonly TempDirectory otherDir = new();

    public MutualTlsTests()
    {
        ProvisioningKit.Create(dir.Path, ["localhost", "127.0.0.1"], ["alice"], "https://localhost:50051");
        ProvisioningKit.Create(otherDir.Path, ["localhost", "127.0.0.1"], ["alice"], "https://localhost:50051");
    }

    public void Dispose()
    {
        dir.Dispose();
        otherDir.Dispose();
    }

    /// <summary>Runs one handshake; returns the id the server authenticated, or the exceptions of both sides.</summary>
    static async Task<(string? ClientId, Exception? ServerError, Exception? ClientError)> Handshake(
        ServerKit server, bool requireCertificate, SslClientAuthenticationOptions clientOptions, string targetHost, Action<string>? serverRejected = null)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        var serverSide = Task.Run(async () =>
        {
            using var socket = await listener.AcceptTcpClientAsync(timeout.Token);
            await using var tls = new SslStream(socket.GetStream());
            await tls.AuthenticateAsServerAsync(server.CreateSslOptions(requireCertificate, serverRejected), timeout.Token);
            using var presented = tls.RemoteCertificate is { } c ? X509CertificateLoader.LoadCertificate(c.GetRawCertData()) : null;
            var id = server.Authenticate(presented, null, presented is null ? null : "unused");
            await tls.WriteAsync(new byte[] { 1 }, timeout.Token); // let the client finish (TLS 1.3 sends the verdict late)
            return id;
        });
        Exception? clientError = null;
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
            await using var tls = new SslStream(client.GetStream());
            clientOptions.TargetHost = targetHost;
            await tls.AuthenticateAsClientAsync(clientOptions, timeout.Token);
            await tls.ReadExactlyAsync(new byte[1], timeout.Token);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            clientError = e;
        }
        try
        {
            return (await serverSide, null, clientError);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return (null, e, clientError);
        }
    }

    [Fact]
    public async Task A_kit_client_connects_and_the_server_learns_its_id()
    {
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));
        var (id, serverError, clientError) = await Handshake(server, true, alice.CreateSslOptions(), "localhost");
        Assert.Null(clientError);
        Assert.Null(serverError);
        Assert.Equal("alice", id);
    }

    [Fact]
    public async Task A_client_from_another_kit_is_refused_by_the_server()
    {
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var stranger = ClientKit.Load(Path.Combine(otherDir.Path, "client-alice"));
        // The stranger's own kit would also refuse our server; accept any server to isolate the server's check.
        var options = stranger.CreateSslOptions();
        options.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        var reasons = new List<string>();
        var (id, serverError, _) = await Handshake(server, true, options, "localhost", reasons.Add);
        Assert.Null(id);
        Assert.NotNull(serverError);
        Assert.Contains(reasons, r => r.Contains("not issued by this federation's CA"));
    }

    [Fact]
    public async Task A_client_refuses_a_server_of_another_kit_and_a_host_the_certificate_does_not_name()
    {
        using var ourServer = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var otherServer = ServerKit.Load(Path.Combine(otherDir.Path, "server"));
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));

        var reasons = new List<string>();
        var (_, _, impostorError) = await Handshake(otherServer, false, alice.CreateSslOptions(reasons.Add), "localhost");
        Assert.NotNull(impostorError);
        Assert.Contains(reasons, r => r.Contains("not issued by this federation's CA"));

        reasons.Clear();
        var (_, _, hostError) = await Handshake(ourServer, false, alice.CreateSslOptions(reasons.Add), "fl.example.org");
        Assert.NotNull(hostError);
        Assert.Contains(reasons, r => r.Contains("does not name the host"));
    }

    [Fact]
    public async Task Without_a_certificate_the_handshake_succeeds_only_when_tokens_are_allowed()
    {
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));
        var tokenOnly = alice.CreateSslOptions();
        tokenOnly.ClientCertificateContext = null;

        // Certificates optional: TLS completes, and the identity check then demands a token (none given here).
        var (id, serverError, _) = await Handshake(server, false, tokenOnly, "localhost");
        Assert.Null(id);
        Assert.Contains("neither a client certificate nor a client id", serverError!.Message);

        // Certificates required: the handshake itself fails.
        var noCertificate = alice.CreateSslOptions();
        noCertificate.ClientCertificateContext = null;
        var reasons = new List<string>();
        var (_, requiredError, _) = await Handshake(server, true, noCertificate, "localhost", reasons.Add);
        Assert.NotNull(requiredError);
        Assert.Contains(reasons, r => r.Contains("requires mutual TLS"));
    }

    [Theory]
    [InlineData(true, "alice")]
    [InlineData(false, "alice (token)")]
    public async Task The_kits_http_handler_speaks_tls_to_the_server_with_or_without_its_certificate(bool presentCertificate, string expected)
    {
        // Prepare: a one-request HTTPS/1.1 server on SslStream that answers with the id the client's certificate proves.
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var serverSide = Task.Run(async () =>
        {
            using var socket = await listener.AcceptTcpClientAsync(timeout.Token);
            await using var tls = new SslStream(socket.GetStream());
            await tls.AuthenticateAsServerAsync(server.CreateSslOptions(requireClientCertificate: presentCertificate), timeout.Token);
            using var presented = tls.RemoteCertificate is { } c ? X509CertificateLoader.LoadCertificate(c.GetRawCertData()) : null;
            string id = presented is not null ? server.Authenticate(presented, null, null)
                : server.Authenticate(null, "alice", File.ReadAllText(Path.Combine(dir.Path, "client-alice", "token")).Trim()) + " (token)";
            // Read the request head up to its blank line; its content does not matter here.
            var head = new List<byte>();
            var one = new byte[1];
            while (!(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
            {
                await tls.ReadExactlyAsync(one, timeout.Token);
                head.Add(one[0]);
            }
            var body = System.Text.Encoding.ASCII.GetBytes(id);
            await tls.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"), timeout.Token);
            await tls.WriteAsync(body, timeout.Token);
        });

        // Execute
        using var handler = ClientKit.CreateHttpHandler(Path.Combine(dir.Path, "client-alice"), presentCertificate: presentCertificate);
        using var http = new HttpClient(handler);
        var answer = await http.GetStringAsync($"https://localhost:{port}/", timeout.Token);
        await serverSide;

        // Assert
        Assert.Equal(expected, answer);
    }
}
