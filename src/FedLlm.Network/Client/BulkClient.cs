using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using FedLlm.Federation;
using FedLlm.Federation.Transfer;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using Grpc.Core;
using static TorchSharp.torch;

namespace FedLlm.Network.Client;

/// <summary>
/// The client side of the bulk channel (federation.proto, "The bulk channel"): one connection per transfer to the
/// server's federation port, with the same credentials as the gRPC channel (TLS pinned to the kit's CA, the client
/// certificate or token). Failures surface as the <see cref="RpcException"/> the same failure of the RPC would give —
/// a refusal with its status and reason, an unreachable or broken connection as Unavailable — so the caller's handling
/// of refusals and outages is one.
/// </summary>
public sealed class BulkClient(ServerConnection connection)
{
    /// <summary>Whether this connection can use the bulk channel: an --insecure connection, or one that knows its TLS
    /// options (<see cref="ServerConnection.BulkTls"/>).</summary>
    public static bool Available(ServerConnection connection) => connection.Insecure || connection.BulkTls is not null;

    /// <summary>The bulk form of FetchGlobal (<paramref name="tensorSet"/> false) or FetchTensorSet.</summary>
    /// <param name="request">The round (and tensor set) to fetch.</param>
    /// <param name="tensorSet">True: FetchTensorSet; false: FetchGlobal.</param>
    /// <param name="cancellationToken">Stops the transfer.</param>
    /// <param name="reuse">Tensors of earlier rounds to decode fp32 tensors into; null = new tensors.</param>
    public async Task<Dictionary<string, Tensor>> FetchAsync(FetchRequest request, bool tensorSet, CancellationToken cancellationToken, ReceivePool? reuse = null)
    {
        var bulk = new BulkRequest { ClientId = connection.ClientId, Token = connection.Token ?? "" };
        if (tensorSet) bulk.FetchTensorSet = request;
        else bulk.FetchGlobal = request;
        return await OnChannel(async stream =>
        {
            await BulkFrames.WriteMessageAsync(stream, bulk, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            var reply = await ReadReplyAsync(stream, cancellationToken);
            if (!reply.Accepted) throw new RpcException(new Status((StatusCode)reply.StatusCode, reply.Reason));
            var (tensors, _) = await BulkFrames.ReadTensorsAsync(stream, _ => null, null, cancellationToken, reuse is null ? null : reuse.Rent);
            return tensors;
        }, cancellationToken);
    }

    /// <summary>The bulk form of SubmitUpdate: the header, the server's go-ahead, then the weights and each tensor set
    /// (in name order) raw from the tensors' memory; the server's <see cref="SubmitReply"/>. A refusal the server sends
    /// while the update is still being written stops the writing.</summary>
    public async Task<SubmitReply> SubmitAsync(int round, ClientUpdate update, TransferEncoding encoding, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(update);
        var bulk = new BulkRequest { ClientId = connection.ClientId, Token = connection.Token ?? "", SubmitUpdate = NetworkClient.UpdateHeaderOf(round, update) };
        return await OnChannel(async stream =>
        {
            await BulkFrames.WriteMessageAsync(stream, bulk, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            var go = await ReadReplyAsync(stream, cancellationToken);
            if (!go.Accepted)
            {
                if (go.StatusCode != 0) throw new RpcException(new Status((StatusCode)go.StatusCode, go.Reason));
                return new SubmitReply { Accepted = false, Reason = go.Reason, RetryAfterSeconds = go.RetryAfterSeconds };
            }
            // The server answers when it has read everything, or earlier to refuse: listen while writing.
            using var stopWriting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var answer = ReadSubmitReplyAsync(stream, stopWriting, cancellationToken);
            try
            {
                foreach (var (setName, name, tensor) in NetworkClient.InWireOrder(update))
                    await BulkFrames.WriteTensorsAsync(stream, TensorChunks.Stream(name, tensor, encoding), setName, null, stopWriting.Token);
                await BulkFrames.WriteEndAsync(stream, stopWriting.Token);
                await stream.FlushAsync(stopWriting.Token);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                // The server refused mid-update (the reply below says why) or the connection broke (the reply read fails).
            }
            return await answer;
        }, cancellationToken);
    }

    /// <summary>Reads the final reply; an early one (a refusal) also stops the writing.</summary>
    static async Task<SubmitReply> ReadSubmitReplyAsync(Stream stream, CancellationTokenSource stopWriting, CancellationToken cancellationToken)
    {
        try
        {
            return await BulkFrames.ReadMessageAsync(stream, SubmitReply.Parser, cancellationToken)
                ?? throw new TransferException("the server ended the upload without a reply");
        }
        finally
        {
            await stopWriting.CancelAsync();
        }
    }

    static async Task<BulkReply> ReadReplyAsync(Stream stream, CancellationToken cancellationToken) =>
        await BulkFrames.ReadMessageAsync(stream, BulkReply.Parser, cancellationToken) ?? throw new TransferException("the server sent an empty reply");

    /// <summary>Runs <paramref name="transfer"/> on a fresh connection and closes it; a connection that cannot be
    /// opened or breaks becomes Unavailable, a protocol violation by the server Internal.</summary>
    async Task<T> OnChannel<T>(Func<Stream, Task<T>> transfer, CancellationToken cancellationToken)
    {
        Stream? stream = null;
        try
        {
            stream = await OpenAsync(cancellationToken);
            return await transfer(stream);
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException && !cancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"bulk channel to {connection.Address}: {e.Message}"));
        }
        catch (TransferException e)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"bulk channel to {connection.Address}: {e.Message}"));
        }
        finally
        {
            if (stream is not null) await stream.DisposeAsync();
        }
    }

    async Task<Stream> OpenAsync(CancellationToken cancellationToken)
    {
        var uri = new Uri(connection.Address);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(uri.Host, uri.Port, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        if (!connection.Insecure)
        {
            var options = connection.BulkTls?.Invoke() ?? throw new InvalidOperationException("a TLS connection without bulk TLS options");
            options.TargetHost = uri.Host;
            options.ApplicationProtocols = [BulkFrames.ApplicationProtocol];
            var tls = new SslStream(stream, leaveInnerStreamOpen: false);
            try
            {
                await tls.AuthenticateAsClientAsync(options, cancellationToken);
            }
            catch
            {
                await tls.DisposeAsync();
                throw;
            }
            if (!tls.NegotiatedApplicationProtocol.Protocol.Span.SequenceEqual(BulkFrames.ApplicationProtocol.Protocol.Span))
            {
                await tls.DisposeAsync();
                throw new IOException("the server did not accept the bulk channel's TLS protocol (an older server, or bulk_transfer off)");
            }
            stream = tls;
        }
        await stream.WriteAsync(BulkFrames.Preface.ToArray(), cancellationToken);
        return stream;
    }
}
