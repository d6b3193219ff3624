using System.Net;
using System.Net.Sockets;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Client;
using Grpc.Core;
using static TorchSharp.torch;

namespace FedLlm.Tests.Network;

/// <summary>A server that dies while a client streams to it must look to the client like any other outage.</summary>
public class ConnectionLossTests
{
    [Fact]
    public async Task An_update_upload_cut_off_by_a_dying_server_fails_as_an_RpcException_so_the_client_rejoins()
    {
        // A stand-in for a server killed with kill -9 mid-upload: it takes the HTTP/2 connection, reads a little of
        // the update (never granting flow-control window, so the client is blocked in a write) and resets the socket.
        // grpc-dotnet throws such a broken write as a raw IOException; the client's run loop only rejoins on
        // RpcException, so an IOException escaping SubmitAsync ended the client process (and a restarted server then
        // waited for its update forever).
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var dying = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync();
            var buffer = new byte[8192];
            int read = 0;
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (read < 32 << 10)
            {
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, patience.Token);
                if (n == 0) break;
                read += n;
            }
            socket.LingerState = new LingerOption(true, 0); // close with RST, as the kernel does for a killed process
            socket.Close();
        });

        var connection = new ServerConnection($"http://127.0.0.1:{port}", "client-0", Insecure: true);
        using var channel = connection.Open();
        var update = new ClientUpdate("client-0", new Dictionary<string, Tensor> { ["w"] = ones(1 << 20) }, 10);
        try
        {
            var api = new FedLlm.Network.Protocol.Federation.FederationClient(channel);
            var thrown = await Record.ExceptionAsync(() => NetworkClient.SubmitAsync(api, connection, 0, update, TransferEncoding.Default, default));
            Assert.IsType<RpcException>(thrown);
        }
        finally
        {
            AdapterTensors.Dispose(update.Weights);
        }
        await dying;
    }
}
