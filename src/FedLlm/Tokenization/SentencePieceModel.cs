using System.Buffers.Binary;
using System.Text;

namespace FedLlm.Tokenization;

/// <summary>
/// The parts of a SentencePiece tokenizer.model (a protobuf <c>ModelProto</c>) that a Hugging Face conversion reads:
/// the pieces with their scores and types, the model type, and the special-piece ids.
/// </summary>
/// <remarks>
/// Field numbers are those of sentencepiece_model.proto: ModelProto { pieces = 1; trainer_spec = 2; normalizer_spec = 3 },
/// SentencePiece { piece = 1; score = 2; type = 3 }, TrainerSpec { model_type = 3; byte_fallback = 35; unk_id = 40;
/// bos_id = 41; eos_id = 42; pad_id = 43 }, NormalizerSpec { name = 1; add_dummy_prefix = 3 }. A small reader keeps
/// the library free of a protobuf dependency for one message type.
/// </remarks>
internal sealed class SentencePieceModel
{
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    public enum ModelKind { Unigram = 1, Bpe = 2, Word = 3, Char = 4 }

    public sealed record Piece(string Text, float Score, PieceType Type);

    public required IReadOnlyList<Piece> Pieces { get; init; }
    public ModelKind Kind { get; init; } = ModelKind.Unigram;
    public bool ByteFallback { get; init; }
    public int UnkId { get; init; }
    public int BosId { get; init; } = 1;
    public int EosId { get; init; } = 2;
    public int PadId { get; init; } = -1;
    public string NormalizerName { get; init; } = "";
    public bool AddDummyPrefix { get; init; } = true;

    /// <summary>The piece at an id, or null for a negative id (sentencepiece's "no such token").</summary>
    public string? PieceAt(int id) => id >= 0 && id < Pieces.Count ? Pieces[id].Text : null;

    /// <summary>Parses a serialized ModelProto.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a ModelProto with pieces.</exception>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data)
    {
        var pieces = new List<Piece>();
        var kind = ModelKind.Unigram;
        bool byteFallback = false;
        int unkId = 0, bosId = 1, eosId = 2, padId = -1;
        string normalizerName = "";
        bool addDummyPrefix = true;

        var model = new ProtoReader(data);
        while (model.TryReadField(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited):
                    pieces.Add(ReadPiece(model.ReadBytes()));
                    break;
                case (2, ProtoReader.LengthDelimited):
                    var trainer = new ProtoReader(model.ReadBytes());
                    while (trainer.TryReadField(out int f, out int w))
                    {
                        switch (f, w)
                        {
                            case (3, ProtoReader.Varint): kind = (ModelKind)(int)trainer.ReadVarint(); break;
                            case (35, ProtoReader.Varint): byteFallback = trainer.ReadVarint() != 0; break;
                            case (40, ProtoReader.Varint): unkId = (int)trainer.ReadVarint(); break;
                            case (41, ProtoReader.Varint): bosId = (int)trainer.ReadVarint(); break;
                            case (42, ProtoReader.Varint): eosId = (int)trainer.ReadVarint(); break;
                            case (43, ProtoReader.Varint): padId = (int)trainer.ReadVarint(); break;
                            default: trainer.Skip(w); break;
                        }
                    }

                    break;
                case (3, ProtoReader.LengthDelimited):
                    var normalizer = new ProtoReader(model.ReadBytes());
                    while (normalizer.TryReadField(out int f, out int w))
                    {
                        switch (f, w)
                        {
                            case (1, ProtoReader.LengthDelimited): normalizerName = Utf8(normalizer.ReadBytes()); break;
                            case (3, ProtoReader.Varint): addDummyPrefix = normalizer.ReadVarint() != 0; break;
                            default: normalizer.Skip(w); break;
                        }
                    }

                    break;
                default:
                    model.Skip(wireType);
                    break;
            }
        }

        if (pieces.Count == 0)
        {
            throw new InvalidDataException("no SentencePiece pieces found (is this a tokenizer.model file?)");
        }

        return new SentencePieceModel
        {
            Pieces = pieces,
            Kind = kind,
            ByteFallback = byteFallback,
            UnkId = unkId,
            BosId = bosId,
            EosId = eosId,
            PadId = padId,
            NormalizerName = normalizerName,
            AddDummyPrefix = addDummyPrefix,
        };
    }

    private static Piece ReadPiece(ReadOnlySpan<byte> data)
    {
        string? text = null;
        float score = 0;
        var type = PieceType.Normal;
        var reader = new ProtoReader(data);
        while (reader.TryReadField(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited): text = Utf8(reader.ReadBytes()); break;
                case (2, ProtoReader.Fixed32): score = BinaryPrimitives.ReadSingleLittleEndian(reader.ReadFixed32()); break;
                case (3, ProtoReader.Varint): type = (PieceType)(int)reader.ReadVarint(); break;
                default: reader.Skip(wireType); break;
            }
        }

        return new Piece(text ?? throw new InvalidDataException("a SentencePiece piece has no text"), score, type);
    }

    private static string Utf8(ReadOnlySpan<byte> bytes) =>
        new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);

    /// <summary>Reads protobuf wire format: tags, varints, fixed32 and length-delimited fields.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        public const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;

        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public bool TryReadField(out int field, out int wireType)
        {
            if (_pos >= _data.Length)
            {
                field = wireType = 0;
                return false;
            }

            ulong tag = ReadVarint();
            field = (int)(tag >> 3);
            wireType = (int)(tag & 7);
            if (field == 0)
            {
                throw new InvalidDataException($"invalid protobuf tag at byte {_pos}");
            }

            return true;
        }

        public ulong ReadVarint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = Next(1)[0];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw new InvalidDataException($"varint longer than 10 bytes at byte {_pos}");
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            ulong length = ReadVarint();
            if (length > (ulong)(_data.Length - _pos))
            {
                throw new InvalidDataException($"field length {length} runs past the end of the data at byte {_pos}");
            }

            return Next((int)length);
        }

        public ReadOnlySpan<byte> ReadFixed32() => Next(4);

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case Varint: ReadVarint(); break;
                case Fixed64: Next(8); break;
                case LengthDelimited: ReadBytes(); break;
                case Fixed32: Next(4); break;
                default: throw new InvalidDataException($"unsupported protobuf wire type {wireType} at byte {_pos}");
            }
        }

        private ReadOnlySpan<byte> Next(int count)
        {
            if (count > _data.Length - _pos)
            {
                throw new InvalidDataException($"unexpected end of data at byte {_pos}");
            }

            var slice = _data.Slice(_pos, count);
            _pos += count;
            return slice;
        }
    }
}
