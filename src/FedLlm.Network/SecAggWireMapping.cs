using FedLlm.Federation.SecureAggregation;
using Google.Protobuf;
using WirePhase = FedLlm.Network.Protocol.SecAggPhase;

namespace FedLlm.Network;

/// <summary>One client message of a secure-aggregation round as it crosses the network: the phase, the protocol message
/// (<see cref="AdvertiseKeys"/>, <see cref="SharedKeys"/>, <see cref="MaskedInput"/> or <see cref="UnmaskShares"/>), and, with the keys, the client's example count and metrics.</summary>
/// <param name="Round">The round.</param>
/// <param name="Phase">The phase the message answers.</param>
/// <param name="Message">The protocol message, or null when the client only asks for the phase's reply again.</param>
/// <param name="ExampleCount">The client's example count (with <see cref="SecAggPhase.AdvertiseKeys"/> only; else 0).</param>
/// <param name="Metrics">The client's metrics in the clear (with <see cref="SecAggPhase.AdvertiseKeys"/> only).</param>
public sealed record SecAggClientMessage(int Round, SecAggPhase Phase, object? Message, long ExampleCount, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// The one mapping between the secure-aggregation protocol's messages (<see cref="SecAggClient"/>,
/// <see cref="SecAggServer"/>) and the wire's SecAggRequest / SecAggReply, in both directions. The payloads are the
/// messages' <see cref="SecAggCodec"/> form, the same bytes the simulation passes and counts, so a message decodes to the
/// record that was sent or fails with a <see cref="SecureAggregationException"/> naming what is wrong.
/// </summary>
public static class SecAggWireMapping
{
    /// <summary>The protocol message type each phase's request carries.</summary>
    public static Type RequestType(SecAggPhase phase) => phase switch
    {
        SecAggPhase.AdvertiseKeys => typeof(AdvertiseKeys),
        SecAggPhase.ShareKeys => typeof(SharedKeys),
        SecAggPhase.MaskedInput => typeof(MaskedInput),
        SecAggPhase.Unmask => typeof(UnmaskShares),
        _ => throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a secure-aggregation phase"),
    };

    /// <summary>The phase on the wire.</summary>
    public static WirePhase ToWire(SecAggPhase phase) => phase switch
    {
        SecAggPhase.AdvertiseKeys => WirePhase.AdvertiseKeys,
        SecAggPhase.ShareKeys => WirePhase.ShareKeys,
        SecAggPhase.MaskedInput => WirePhase.MaskedInput,
        SecAggPhase.Unmask => WirePhase.Unmask,
        _ => throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a secure-aggregation phase"),
    };

    /// <summary>The phase of a wire request.</summary>
    /// <exception cref="SecureAggregationException">The phase is unset or unknown.</exception>
    public static SecAggPhase FromWire(WirePhase phase) => phase switch
    {
        WirePhase.AdvertiseKeys => SecAggPhase.AdvertiseKeys,
        WirePhase.ShareKeys => SecAggPhase.ShareKeys,
        WirePhase.MaskedInput => SecAggPhase.MaskedInput,
        WirePhase.Unmask => SecAggPhase.Unmask,
        _ => throw new SecureAggregationException($"unknown secure-aggregation phase {(int)phase} in the request"),
    };

    /// <summary>A client's message as a wire request.</summary>
    /// <exception cref="ArgumentException">The message is not the phase's kind.</exception>
    public static Protocol.SecAggRequest ToWire(SecAggClientMessage m)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (m.Message is not null && m.Message.GetType() != RequestType(m.Phase))
            throw new ArgumentException($"phase {m.Phase} carries a {RequestType(m.Phase).Name}, not a {m.Message.GetType().Name}", nameof(m));
        var wire = new Protocol.SecAggRequest
        {
            Round = m.Round, Phase = ToWire(m.Phase), ExampleCount = m.ExampleCount,
            Payload = m.Message is null ? ByteString.Empty : ByteString.CopyFrom(SecAggCodec.Encode(m.Message)),
        };
        foreach (var (key, value) in m.Metrics) wire.Metrics[key] = value;
        return wire;
    }

    /// <summary>The largest payload one request carries; a longer message travels in parts (<see cref="ToWireParts"/>).</summary>
    public const int MaxPartBytes = 1 << 20;

    /// <summary>A client's message as the requests that carry it, in order: one, or parts of at most
    /// <see cref="MaxPartBytes"/> with the example count and metrics on the first.</summary>
    public static IReadOnlyList<Protocol.SecAggRequest> ToWireParts(SecAggClientMessage m)
    {
        var whole = ToWire(m);
        int length = whole.Payload.Length;
        if (length <= MaxPartBytes) return [whole];
        int parts = (length + MaxPartBytes - 1) / MaxPartBytes;
        var list = new List<Protocol.SecAggRequest>(parts);
        for (int i = 0; i < parts; i++)
        {
            int offset = i * MaxPartBytes;
            var part = new Protocol.SecAggRequest
            {
                Round = whole.Round, Phase = whole.Phase, Part = i, Parts = parts,
                Payload = ByteString.CopyFrom(whole.Payload.Span.Slice(offset, Math.Min(MaxPartBytes, length - offset))),
            };
            if (i == 0)
            {
                part.ExampleCount = whole.ExampleCount;
                part.Metrics.Add(whole.Metrics);
            }
            list.Add(part);
        }
        return list;
    }

    /// <summary>The client's message of a wire request.</summary>
    /// <exception cref="SecureAggregationException">Unknown phase, a payload that is not the phase's message, or a
    /// negative example count.</exception>
    public static SecAggClientMessage FromWire(Protocol.SecAggRequest wire)
    {
        ArgumentNullException.ThrowIfNull(wire);
        var phase = FromWire(wire.Phase);
        if (wire.ExampleCount < 0) throw new SecureAggregationException($"a secure-aggregation request declares {wire.ExampleCount} examples");
        object? message = wire.Payload.IsEmpty ? null : phase switch
        {
            SecAggPhase.AdvertiseKeys => SecAggCodec.Decode<AdvertiseKeys>(wire.Payload.ToByteArray()),
            SecAggPhase.ShareKeys => SecAggCodec.Decode<SharedKeys>(wire.Payload.ToByteArray()),
            SecAggPhase.MaskedInput => SecAggCodec.Decode<MaskedInput>(wire.Payload.ToByteArray()),
            _ => SecAggCodec.Decode<UnmaskShares>(wire.Payload.ToByteArray()),
        };
        return new SecAggClientMessage(wire.Round, phase, message, wire.ExampleCount, wire.Metrics.ToDictionary(kv => kv.Key, kv => kv.Value));
    }

    /// <summary>The server's message for the phase after <paramref name="phase"/> (a roster, a masking request, an
    /// unmasking request, or nothing once unmasked) as a reply.</summary>
    public static Protocol.SecAggReply Reply(SecAggPhase phase, object? next)
    {
        var expected = NextType(phase);
        if (expected is null ? next is not null : next?.GetType() != expected)
            throw new ArgumentException($"the reply to phase {phase} carries {expected?.Name ?? "nothing"}, not {next?.GetType().Name ?? "nothing"}", nameof(next));
        return new Protocol.SecAggReply { Payload = next is null ? ByteString.Empty : ByteString.CopyFrom(SecAggCodec.Encode(next)) };
    }

    /// <summary>A reply that says the phase is still open.</summary>
    public static Protocol.SecAggReply Pending() => new() { Pending = true };

    /// <summary>The server's message in a reply to <paramref name="phase"/>, typed; null after <see cref="SecAggPhase.Unmask"/>.</summary>
    /// <exception cref="SecureAggregationException">The payload is not the message that phase's reply carries.</exception>
    public static object? FromReply(SecAggPhase phase, Protocol.SecAggReply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply.Pending) throw new ArgumentException("a pending reply carries no message", nameof(reply));
        return phase switch
        {
            SecAggPhase.AdvertiseKeys => SecAggCodec.Decode<KeyRoster>(reply.Payload.ToByteArray()),
            SecAggPhase.ShareKeys => SecAggCodec.Decode<MaskingRequest>(reply.Payload.ToByteArray()),
            SecAggPhase.MaskedInput => SecAggCodec.Decode<UnmaskRequest>(reply.Payload.ToByteArray()),
            _ => reply.Payload.IsEmpty ? null : throw new SecureAggregationException($"the reply to phase {phase} carries {reply.Payload.Length} unexpected bytes"),
        };
    }

    static Type? NextType(SecAggPhase phase) => phase switch
    {
        SecAggPhase.AdvertiseKeys => typeof(KeyRoster),
        SecAggPhase.ShareKeys => typeof(MaskingRequest),
        SecAggPhase.MaskedInput => typeof(UnmaskRequest),
        SecAggPhase.Unmask => null,
        _ => throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a secure-aggregation phase"),
    };
}
