using System.Security.Authentication;
using Grpc.Core;

namespace FedLlm.Network.Client;

/// <summary>
/// Whether a failed call means "try again later" (the server is down, restarting or stopping) or "this client will never
/// get in" (refused identity, roster, protocol, base model or task; a TLS handshake that cannot succeed), with the
/// message a client prints in one line.
/// </summary>
public sealed record ConnectionFailure(bool Permanent, string Message)
{
    /// <summary>Sorts a failed call into retry-later or permanent, reading the gRPC status and, for TLS failures, the
    /// exception chain and what <paramref name="connection"/>'s certificate check recorded.</summary>
    public static ConnectionFailure Classify(RpcException error, ServerConnection connection)
    {
        string detail = OneLine(error.Status.Detail);
        switch (error.StatusCode)
        {
            case StatusCode.Unauthenticated:
            case StatusCode.PermissionDenied:
            case StatusCode.FailedPrecondition:
            case StatusCode.Unimplemented:
                return new(true, $"the server refused this client: {detail}");
        }
        if (error.StatusCode != StatusCode.Unavailable && error.StatusCode != StatusCode.Internal)
            return new(false, $"server unavailable ({error.StatusCode}: {detail})");
        if (connection.Tls?.ServerRejectedReason is { } rejected)
            return new(true, $"this client refused the server's certificate: {OneLine(rejected)}; check the server URL and that the kit comes from the server's `fedllm certs`");
        var chain = Chain(error.Status.DebugException).ToList();
        if (chain.OfType<AuthenticationException>().FirstOrDefault() is { } tls)
            return new(true, $"the TLS handshake with {connection.Address} failed ({OneLine(tls.Message)}): the server did not accept this client's " +
                "certificate. Likely causes: the kit is from another `fedllm certs` (another CA), the certificate has expired, or the server " +
                "wants a client certificate (auth: certificate) and this client uses its token only");
        if (!connection.Insecure && chain.Any(e => e.Message.Contains("HTTP/2 handshake", StringComparison.OrdinalIgnoreCase) || e is EndOfStreamException))
            return new(true, $"the server at {connection.Address} closed the connection during the TLS handshake: it did not accept this client's " +
                "certificate. Likely causes: the kit is from another `fedllm certs` (another CA), the certificate has expired, or the server " +
                "wants a client certificate (auth: certificate) and this client uses its token only");
        return new(false, $"server unavailable ({detail})");
    }

    static IEnumerable<Exception> Chain(Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            yield return e;
            if (e is AggregateException aggregate)
                foreach (var inner in aggregate.InnerExceptions.SelectMany(Chain)) yield return inner;
        }
    }

    static string OneLine(string text) => string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
