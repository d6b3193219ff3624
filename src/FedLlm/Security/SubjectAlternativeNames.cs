using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace FedLlm.Security;

/// <summary>Reads URI entries of a certificate's subjectAltName, which .NET's extension class does not enumerate.</summary>
internal static class SubjectAlternativeNames
{
    private const string Oid = "2.5.29.17";

    // GeneralName ::= CHOICE { ... uniformResourceIdentifier [6] IA5String ... } (RFC 5280 §4.2.1.6)
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    public static IReadOnlyList<string> Uris(X509Certificate2 certificate)
    {
        var extension = certificate.Extensions[Oid];
        if (extension is null) return [];
        var uris = new List<string>();
        var names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
        while (names.HasData)
        {
            if (names.PeekTag() == UriTag) uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
            else names.ReadEncodedValue();
        }
        return uris;
    }
}
