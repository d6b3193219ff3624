namespace FedLlm.Federation.SecureAggregation;

/// <summary>
/// The byte form of the protocol's messages: what a transport carries as one opaque payload per client and phase, and
/// what the overhead figures count. Little-endian, a format byte and a message-kind byte first; every length is
/// checked against what remains before anything is allocated, so a malformed payload fails with a clear error.
/// </summary>
public static class SecAggCodec
{
    const byte Format = 1;

    enum Kind : byte { Advertise = 1, Roster, Shared, Request, Masked, Unmask, Revealed }

    /// <summary>Encodes one protocol message.</summary>
    public static byte[] Encode(object message)
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        w.Write(Format);
        switch (message)
        {
            case AdvertiseKeys a: w.Write((byte)Kind.Advertise); WriteAdvert(w, a); break;
            case KeyRoster r:
                w.Write((byte)Kind.Roster); w.Write(r.Round); w.Write(r.Client); w.Write(r.Threshold); w.Write(r.Holders.Count);
                foreach (var h in r.Holders) WriteAdvert(w, h);
                break;
            case SharedKeys s:
                w.Write((byte)Kind.Shared); w.Write(s.Client); WriteBytes(w, s.SelfMaskCommitment); WriteShares(w, s.Shares);
                break;
            case MaskingRequest q: w.Write((byte)Kind.Request); w.Write(q.Round); w.Write(q.Client); WriteShares(w, q.Shares); break;
            case MaskedInput m:
                w.Write((byte)Kind.Masked); w.Write(m.Client); w.Write(m.Vector.Length);
                foreach (uint x in m.Vector) w.Write(x);
                break;
            case UnmaskRequest u: w.Write((byte)Kind.Unmask); w.Write(u.Round); WriteIds(w, u.Survivors); WriteIds(w, u.Dropped); break;
            case UnmaskShares v:
                w.Write((byte)Kind.Revealed); w.Write(v.Client); w.Write(v.Shares.Count);
                foreach (var s in v.Shares) { w.Write(s.Owner); w.Write((byte)s.Kind); WriteBytes(w, s.Value); }
                break;
            default: throw new ArgumentException($"not a secure-aggregation message: {message?.GetType().Name ?? "null"}", nameof(message));
        }
        w.Flush();
        return stream.ToArray();
    }

    /// <summary>Decodes a message of type <typeparamref name="T"/>.</summary>
    /// <exception cref="SecureAggregationException">The payload is not such a message, or is truncated or oversized.</exception>
    public static T Decode<T>(byte[] payload) where T : class
    {
        ArgumentNullException.ThrowIfNull(payload);
        try
        {
            using var r = new BinaryReader(new MemoryStream(payload, writable: false));
            if (r.ReadByte() != Format) throw new InvalidDataException("unknown format");
            var kind = (Kind)r.ReadByte();
            object message = kind switch
            {
                Kind.Advertise => ReadAdvert(r),
                Kind.Roster => new KeyRoster(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), ReadList(r, 16, ReadAdvert)),
                Kind.Shared => new SharedKeys(r.ReadInt32(), ReadBytes(r), ReadShares(r)),
                Kind.Request => new MaskingRequest(r.ReadInt32(), r.ReadInt32(), ReadShares(r)),
                Kind.Masked => new MaskedInput(r.ReadInt32(), ReadList(r, 4, x => x.ReadUInt32()).ToArray()),
                Kind.Unmask => new UnmaskRequest(r.ReadInt32(), ReadIds(r), ReadIds(r)),
                Kind.Revealed => new UnmaskShares(r.ReadInt32(), ReadList(r, 9, x => new RevealedShare(x.ReadInt32(), ReadKind(x), ReadBytes(x)))),
                _ => throw new InvalidDataException($"unknown message kind {(byte)kind}"),
            };
            if (r.BaseStream.Position != payload.Length) throw new InvalidDataException($"{payload.Length - r.BaseStream.Position} trailing bytes");
            return message as T ?? throw new InvalidDataException($"a {message.GetType().Name} where a {typeof(T).Name} was expected");
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            throw new SecureAggregationException($"malformed secure-aggregation message ({payload.Length} bytes): {e.Message}");
        }
    }

    static void WriteAdvert(BinaryWriter w, AdvertiseKeys a)
    {
        w.Write(a.Client);
        WriteBytes(w, a.EncryptionKey);
        WriteBytes(w, a.MaskingKey);
    }

    static AdvertiseKeys ReadAdvert(BinaryReader r) => new(r.ReadInt32(), ReadBytes(r), ReadBytes(r));

    static void WriteShares(BinaryWriter w, IReadOnlyList<EncryptedShare> shares)
    {
        w.Write(shares.Count);
        foreach (var s in shares)
        {
            w.Write(s.From); w.Write(s.To);
            WriteBytes(w, s.Nonce); WriteBytes(w, s.Ciphertext); WriteBytes(w, s.Tag);
        }
    }

    static IReadOnlyList<EncryptedShare> ReadShares(BinaryReader r) =>
        ReadList(r, 20, x => new EncryptedShare(x.ReadInt32(), x.ReadInt32(), ReadBytes(x), ReadBytes(x), ReadBytes(x)));

    static void WriteIds(BinaryWriter w, IReadOnlyList<int> ids)
    {
        w.Write(ids.Count);
        foreach (int id in ids) w.Write(id);
    }

    static IReadOnlyList<int> ReadIds(BinaryReader r) => ReadList(r, 4, x => x.ReadInt32());

    static void WriteBytes(BinaryWriter w, byte[] bytes)
    {
        w.Write(bytes.Length);
        w.Write(bytes);
    }

    static byte[] ReadBytes(BinaryReader r)
    {
        int length = r.ReadInt32();
        if (length < 0 || length > r.BaseStream.Length - r.BaseStream.Position) throw new InvalidDataException($"a field of {length} bytes overruns the message");
        return r.ReadBytes(length);
    }

    static SecretKind ReadKind(BinaryReader r)
    {
        var kind = (SecretKind)r.ReadByte();
        return Enum.IsDefined(kind) ? kind : throw new InvalidDataException($"unknown secret kind {(byte)kind}");
    }

    /// <summary>A count-prefixed list; <paramref name="minBytes"/> per item bounds the count by what remains.</summary>
    static IReadOnlyList<T> ReadList<T>(BinaryReader r, int minBytes, Func<BinaryReader, T> read)
    {
        int count = r.ReadInt32();
        if (count < 0 || (long)count * minBytes > r.BaseStream.Length - r.BaseStream.Position)
            throw new InvalidDataException($"a list of {count} items overruns the message");
        var list = new List<T>(count);
        for (int i = 0; i < count; i++) list.Add(read(r));
        return list;
    }
}
