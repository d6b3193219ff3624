using FedLlm.Federation.SecureAggregation;
using FedLlm.Network;
using FedLlm.Network.Protocol;
using Google.Protobuf;
using SecAggPhase = FedLlm.Federation.SecureAggregation.SecAggPhase;

namespace FedLlm.Tests.Network;

/// <summary>The secure-aggregation messages survive the wire: library record → SecAggRequest/SecAggReply → protobuf
/// bytes → back, for every phase, with messages produced by real client and server sessions.</summary>
public class SecAggWireMappingTests
{
    [Fact]
    public void Every_phase_message_and_reply_of_a_real_round_round_trips_through_protobuf_bytes()
    {
        // Prepare: a three-client round run by hand, each message taken through the wire mapping and protobuf.
        var server = new SecAggServer(4, [0, 1, 2], threshold: 2, neighbours: null, vectorLength: 5);
        var clients = new[] { new SecAggClient(4, 0), new SecAggClient(4, 1), new SecAggClient(4, 2) };
        try
        {
            var metrics = new Dictionary<string, double> { ["train_loss"] = 1.25 };
            var adverts = clients.Select(c => Carry(SecAggPhase.AdvertiseKeys, c.Advertise(), 7 + c.Client, metrics)).ToList();
            var rosters = server.CollectKeys(adverts).Select(r => Back(SecAggPhase.AdvertiseKeys, r)).Cast<KeyRoster>().ToList();
            var shared = rosters.Select(r => Carry(SecAggPhase.ShareKeys, clients[r.Client].ShareKeys(r))).ToList();
            var requests = server.CollectShares(shared).Select(r => Back(SecAggPhase.ShareKeys, r)).Cast<MaskingRequest>().ToList();
            uint[][] inputs = [[1, 2, 3, 4, 5], [10, 20, 30, 40, 50], [100, 200, 300, 400, 500]];
            var masked = requests.Select(r => Carry(SecAggPhase.MaskedInput, clients[r.Client].Mask(r, inputs[r.Client]))).ToList();
            var unmask = (UnmaskRequest)Back(SecAggPhase.MaskedInput, server.CollectMaskedInputs(masked))!;
            var revealed = unmask.Survivors.Select(id => Carry(SecAggPhase.Unmask, clients[id].Unmask(unmask))).ToList();
            var result = server.Unmask(revealed);

            // Assert: the round completes on the carried messages, so every one arrived intact.
            Assert.Equal(new uint[] { 111, 222, 333, 444, 555 }, result.Sum);
            Assert.Null(Back(SecAggPhase.Unmask, null));
        }
        finally
        {
            foreach (var c in clients) c.Dispose();
        }
    }

    [Fact]
    public void Example_count_metrics_round_and_a_repeated_ask_survive_the_wire()
    {
        var message = new SecAggClientMessage(3, SecAggPhase.AdvertiseKeys, new AdvertiseKeys(1, [1, 2], [3, 4]), 42, new Dictionary<string, double> { ["train_loss"] = 0.5 });
        var back = SecAggWireMapping.FromWire(SecAggRequest.Parser.ParseFrom(SecAggWireMapping.ToWire(message).ToByteArray()));
        Assert.Equal((3, SecAggPhase.AdvertiseKeys, 42L), (back.Round, back.Phase, back.ExampleCount));
        Assert.Equal(0.5, back.Metrics["train_loss"]);
        Assert.Equal(SecAggCodec.Encode(message.Message!), SecAggCodec.Encode(back.Message!));

        var ask = SecAggWireMapping.FromWire(SecAggWireMapping.ToWire(new SecAggClientMessage(3, SecAggPhase.Unmask, null, 0, new Dictionary<string, double>())));
        Assert.Null(ask.Message);
        Assert.Equal(SecAggPhase.Unmask, ask.Phase);
        Assert.True(SecAggReply.Parser.ParseFrom(SecAggWireMapping.Pending().ToByteArray()).Pending);
    }

    [Fact]
    public void A_payload_of_another_phase_an_unknown_phase_or_garbage_is_refused_with_a_clear_error()
    {
        var keys = SecAggCodec.Encode(new AdvertiseKeys(0, [1], [2]));
        var wrongKind = new SecAggRequest { Round = 0, Phase = FedLlm.Network.Protocol.SecAggPhase.MaskedInput, Payload = ByteString.CopyFrom(keys) };
        Assert.Contains("where a MaskedInput was expected", Assert.Throws<SecureAggregationException>(() => SecAggWireMapping.FromWire(wrongKind)).Message);
        var unknown = new SecAggRequest { Round = 0, Phase = (FedLlm.Network.Protocol.SecAggPhase)9 };
        Assert.Contains("unknown secure-aggregation phase 9", Assert.Throws<SecureAggregationException>(() => SecAggWireMapping.FromWire(unknown)).Message);
        var unset = new SecAggRequest { Round = 0 };
        Assert.Throws<SecureAggregationException>(() => SecAggWireMapping.FromWire(unset));
        var garbage = new SecAggRequest { Round = 0, Phase = FedLlm.Network.Protocol.SecAggPhase.ShareKeys, Payload = ByteString.CopyFrom(1, 2, 255, 255, 255, 127) };
        Assert.Contains("malformed secure-aggregation message", Assert.Throws<SecureAggregationException>(() => SecAggWireMapping.FromWire(garbage)).Message);
        Assert.Throws<ArgumentException>(() => SecAggWireMapping.ToWire(new SecAggClientMessage(0, SecAggPhase.ShareKeys, new AdvertiseKeys(0, [1], [2]), 0, new Dictionary<string, double>())));
        Assert.Throws<ArgumentException>(() => SecAggWireMapping.Reply(SecAggPhase.ShareKeys, new UnmaskRequest(0, [0], [])));
    }

    [Fact]
    public void A_masked_input_above_one_MiB_travels_in_parts_and_is_assembled_whole_in_order_only()
    {
        // 600,000 ring elements: 2.4 MB of payload, three parts of at most 1 MiB.
        var vector = Enumerable.Range(0, 600_000).Select(i => (uint)i * 2654435761u).ToArray();
        var message = new SecAggClientMessage(2, SecAggPhase.MaskedInput, new MaskedInput(1, vector), 0, new Dictionary<string, double>());
        var parts = SecAggWireMapping.ToWireParts(message);
        Assert.Equal(3, parts.Count);
        Assert.All(parts, p => Assert.True(p.Payload.Length <= SecAggWireMapping.MaxPartBytes));
        Assert.Single(SecAggWireMapping.ToWireParts(new SecAggClientMessage(2, SecAggPhase.MaskedInput, new MaskedInput(1, [1, 2, 3]), 0, new Dictionary<string, double>())));

        var round = new FedLlm.Network.Server.SecAggRound(2, ["client-0", "client-1"], vectorLength: vector.Length + 1);
        Assert.Null(round.Assemble("client-1", SecAggRequest.Parser.ParseFrom(parts[0].ToByteArray()), out var refusal));
        Assert.Null(refusal);
        Assert.Null(round.Assemble("client-1", parts[1], out refusal));
        var whole = round.Assemble("client-1", parts[2], out refusal);
        Assert.Null(refusal);
        var back = (MaskedInput)SecAggWireMapping.FromWire(whole!).Message!;
        Assert.Equal(vector, back.Vector);

        // Out of order, or a message larger than any of the round's: refused before it is buffered further.
        Assert.Null(round.Assemble("client-1", parts[1], out refusal));
        Assert.Contains("out of order", refusal);
        var small = new FedLlm.Network.Server.SecAggRound(2, ["client-0", "client-1"], vectorLength: 1000);
        Assert.Null(small.Assemble("client-1", parts[0], out refusal));
        Assert.Contains("at most 1 parts", refusal);
        Assert.Null(round.Assemble("client-9", parts[0], out refusal));
        Assert.Contains("not a participant", refusal);
    }

    /// <summary>A client message through the request mapping and its protobuf bytes.</summary>
    static T Carry<T>(SecAggPhase phase, T message, long exampleCount = 0, IReadOnlyDictionary<string, double>? metrics = null) where T : class
    {
        var wire = SecAggWireMapping.ToWire(new SecAggClientMessage(4, phase, message, exampleCount, metrics ?? new Dictionary<string, double>()));
        var back = SecAggWireMapping.FromWire(SecAggRequest.Parser.ParseFrom(wire.ToByteArray()));
        Assert.Equal(phase, back.Phase);
        Assert.Equal(exampleCount, back.ExampleCount);
        return (T)back.Message!;
    }

    /// <summary>The server's reply to <paramref name="phase"/> through the reply mapping and its protobuf bytes.</summary>
    static object? Back(SecAggPhase phase, object? next) =>
        SecAggWireMapping.FromReply(phase, SecAggReply.Parser.ParseFrom(SecAggWireMapping.Reply(phase, next).ToByteArray()));
}
