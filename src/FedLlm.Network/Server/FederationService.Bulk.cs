using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using FedLlm.Federation;
using FedLlm.Network.Protocol;
using FedLlm.Network.Transfer;
using Grpc.Core;
using static TorchSharp.torch;

namespace FedLlm.Network.Server;

/// <summary>The bulk channel's side of the service: the same fetches and uploads as the RPCs, with the same
/// authentication, leases, admission checks, size limits and screening, over a connection of their own.</summary>
public sealed partial class FederationService
{
    /// <summary>How long a refused upload's remaining bytes are read and dropped, so the client's kernel does not
    /// discard the refusal (a connection closed with unread data is reset) before the client reads it.</summary>
    static readonly TimeSpan DrainAfterRefusal = TimeSpan.FromSeconds(5);

    /// <summary>Serves one bulk connection (its preface, one request, the transfer) and returns; the caller closes
    /// it.</summary>
    /// <param name="stream">The connection after TLS (or the plain connection of an --insecure server).</param>
    /// <param name="certificate">The client certificate TLS accepted, or null.</param>
    /// <param name="peer">The remote address, for the refusal log.</param>
    /// <param name="cancellationToken">The connection's end or the server's stop.</param>
    public async Task ServeBulkAsync(Stream stream, X509Certificate2? certificate, string peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var stall = new TransferStall(cancellationToken, clients.Options.TransferStallTimeout);
        try
        {
            await ServeBulkAsync(stream, certificate, peer, stall);
        }
        finally
        {
            if (stall.Fired) LogStall(stall, peer, "bulk connection");
        }
    }

    async Task ServeBulkAsync(Stream stream, X509Certificate2? certificate, string peer, TransferStall stall)
    {
        var cancellationToken = stall.Token;
        BulkRequest request;
        try
        {
            await BulkFrames.ReadPrefaceAsync(stream, cancellationToken);
            request = await BulkFrames.ReadMessageAsync(stream, BulkRequest.Parser, cancellationToken)
                ?? throw new TransferException("a bulk connection sent no request");
        }
        catch (TransferException e)
        {
            refusals.Refused("protocol", peer, e.Message);
            return;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            return;
        }
        try
        {
            string id = Identify(new CallerCredentials(certificate, request.ClientId, request.Token.Length > 0 ? request.Token : null), peer);
            switch (request.TransferCase)
            {
                case BulkRequest.TransferOneofCase.FetchGlobal:
                    await ServeFetchAsync(stream, id, request.FetchGlobal, c => c.EncodedGlobal, stall);
                    break;
                case BulkRequest.TransferOneofCase.FetchTensorSet:
                    var fetch = request.FetchTensorSet;
                    await ServeFetchAsync(stream, id, fetch, c => c.EncodedSet(fetch.TensorSet)
                        ?? throw new RpcException(new Status(StatusCode.NotFound, $"round {RoundRecord.NumberOf(fetch.Round)} has no tensor set '{fetch.TensorSet}'")), stall);
                    break;
                case BulkRequest.TransferOneofCase.SubmitUpdate:
                    await ReceiveUpdateAsync(stream, id, request, stall);
                    break;
                default:
                    refusals.Refused("protocol", peer, "a bulk request that names no transfer");
                    await WriteRefusalAsync(stream, StatusCode.InvalidArgument, "a bulk request must name a transfer (fetch_global, fetch_tensor_set or submit_update)", cancellationToken);
                    break;
            }
        }
        catch (RpcException e)
        {
            await WriteRefusalAsync(stream, e.StatusCode, e.Status.Detail, cancellationToken);
        }
    }

    static async Task WriteRefusalAsync(Stream stream, StatusCode code, string reason, CancellationToken cancellationToken)
    {
        try
        {
            await BulkFrames.WriteMessageAsync(stream, new BulkReply { Accepted = false, StatusCode = (int)code, Reason = reason }, cancellationToken);
            await stream.FlushAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The client hung up first; it learns nothing more from this connection.
        }
    }

    /// <summary>The bulk form of FetchGlobal/FetchTensorSet: the round's chunks, encoded once for every client, written
    /// as raw bytes after each tensor's header.</summary>
    async Task ServeFetchAsync(Stream stream, string id, FetchRequest request, Func<OpenRound, IReadOnlyList<TensorChunk>> pick, TransferStall stall)
    {
        var cancellationToken = stall.Token;
        using var lease = clients.Lease(id, request.Round, out string reason)
            ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, reason));
        var chunks = pick(lease.Context);
        var alive = Stopwatch.StartNew();
        try
        {
            await BulkFrames.WriteMessageAsync(stream, new BulkReply { Accepted = true }, cancellationToken);
            long sent = await BulkFrames.WriteTensorsAsync(stream, chunks, "", () => KeepAlive(id, alive, stall), cancellationToken);
            await BulkFrames.WriteEndAsync(stream, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            Interlocked.Add(ref lease.Context.BytesSent, sent + 4);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The client went away mid-fetch; it fetches again when it comes back.
        }
    }

    /// <summary>A client reading or sending a large adapter over a slow link is alive even if its heartbeats queue
    /// behind the data, and its transfer is not stalled.</summary>
    void KeepAlive(string id, Stopwatch alive, TransferStall stall)
    {
        if (alive.Elapsed <= TimeSpan.FromSeconds(1)) return;
        clients.Seen(id);
        stall.Progress();
        alive.Restart();
    }

    /// <summary>The bulk form of SubmitUpdate: the go-ahead (or the refusal) after the header, then the tensors straight
    /// into their decoders, each header admitted and the size limit checked before its bytes are read; the reply is a
    /// <see cref="SubmitReply"/> frame.</summary>
    async Task ReceiveUpdateAsync(Stream stream, string id, BulkRequest request, TransferStall stall)
    {
        var cancellationToken = stall.Token;
        var header = request.SubmitUpdate;
        long bytes = 4 + request.CalculateSize();
        var (opened, limit, refusal) = OpenSubmission(id, header, bytes);
        if (opened is null)
        {
            await BulkFrames.WriteMessageAsync(stream, new BulkReply { Accepted = false, Reason = refusal!.Reason, RetryAfterSeconds = refusal.RetryAfterSeconds }, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            return;
        }
        using var lease = opened;
        var round = lease.Context;
        var returned = round.Instructions.ReturnedTensorSets;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var sets = returned.ToDictionary(name => name, _ => new Dictionary<string, Tensor>(StringComparer.Ordinal), StringComparer.Ordinal);
        var alive = Stopwatch.StartNew();
        SubmitReply reply;
        try
        {
            await BulkFrames.WriteMessageAsync(stream, new BulkReply { Accepted = true }, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            while (await BulkFrames.ReadMessageAsync(stream, BulkTensor.Parser, cancellationToken) is { } frame)
            {
                bytes += 4 + frame.CalculateSize();
                if (frame.Header is not { } tensor) throw new TransferException("a tensor frame without a header");
                Dictionary<string, Tensor> target;
                string part;
                if (frame.TensorSet.Length == 0) (target, part) = (weights, "weights");
                else if (sets.TryGetValue(frame.TensorSet, out var set)) (target, part) = (set, frame.TensorSet.Replace('_', ' '));
                else throw new TransferException($"tensor set '{frame.TensorSet}' was not asked for in this round");
                if (Admit(tensor, round.Global, target, part) is { } refused) throw new TransferException(refused);
                if (bytes + tensor.EncodedBytes > limit) throw new TransferException($"update exceeds the size limit of {limit} bytes");
                using var decoder = TensorAssembler.Decoder(tensor, clients.Received.Rent);
                await BulkFrames.ReadPayloadAsync(stream, decoder, () => KeepAlive(id, alive, stall), cancellationToken);
                bytes += decoder.Length;
                target[tensor.Name] = TensorAssembler.Finish(tensor.Name, decoder).DetachFromDisposeScope();
            }
            bytes += 4;
        }
        catch (TransferException e)
        {
            Interlocked.Add(ref round.BytesReceived, bytes);
            Free(weights, sets);
            reply = Refuse(id, header.Round, e.Message);
            await ReplyThenDrainAsync(stream, reply, limit - bytes, cancellationToken);
            return;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The connection broke mid-upload (the client died or its link did): as with a cut gRPC stream, nothing is
            // taken and nothing refused; the client sends again when it is back.
            Interlocked.Add(ref round.BytesReceived, bytes);
            Free(weights, sets);
            return;
        }
        Interlocked.Add(ref round.BytesReceived, bytes);
        reply = TakeUpdate(id, lease, header, weights, sets, bytes);
        try
        {
            await BulkFrames.WriteMessageAsync(stream, reply, cancellationToken);
            await stream.FlushAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // Taken (or refused) all the same; a client that missed the reply learns the round's outcome from its next task.
        }
    }

    static void Free(Dictionary<string, Tensor> weights, Dictionary<string, Dictionary<string, Tensor>> sets)
    {
        AdapterTensors.Dispose(weights);
        foreach (var set in sets.Values) AdapterTensors.Dispose(set);
    }

    /// <summary>Writes a refusal, then reads and drops what the client still sends (at most <paramref name="budget"/>
    /// bytes, for at most <see cref="DrainAfterRefusal"/>) until it hangs up.</summary>
    static async Task ReplyThenDrainAsync(Stream stream, SubmitReply reply, long budget, CancellationToken cancellationToken)
    {
        try
        {
            await BulkFrames.WriteMessageAsync(stream, reply, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(DrainAfterRefusal);
            var sink = new byte[64 << 10];
            while (budget > 0)
            {
                int read = await stream.ReadAsync(sink, deadline.Token);
                if (read == 0) break;
                budget -= read;
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The client hung up or the drain timed out: either way the refusal was written.
        }
    }
}
