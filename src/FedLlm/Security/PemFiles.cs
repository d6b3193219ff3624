using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FedLlm.Io;

namespace FedLlm.Security;

/// <summary>Certificates and private keys as PEM files; private keys (and tokens) are created owner-only (0600) on Unix.</summary>
public static class PemFiles
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Writes the certificate (public part only) as PEM, atomically.</summary>
    public static void WriteCertificate(string path, X509Certificate2 certificate) =>
        AtomicFile.WriteAllText(path, certificate.ExportCertificatePem() + "\n");

    /// <summary>Writes the certificate's ECDSA private key as PKCS#8 PEM, readable by its owner only.</summary>
    public static void WritePrivateKey(string path, X509Certificate2 certificate)
    {
        using var key = certificate.GetECDsaPrivateKey()
            ?? throw new InvalidOperationException($"certificate '{certificate.Subject}' carries no ECDSA private key to write to {path}");
        WriteSecret(path, key.ExportPkcs8PrivateKeyPem() + "\n");
    }

    /// <summary>Writes <paramref name="text"/> to a new file that is 0600 from its creation, so the secret is never
    /// readable by others, not even for a moment; an existing file is replaced.</summary>
    public static void WriteSecret(string path, string text)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temporary = full + "." + Guid.NewGuid().ToString("N") + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = OwnerOnly;
        try
        {
            using (var stream = new FileStream(temporary, options))
            using (var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false)))
            {
                writer.Write(text);
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>The first certificate in a PEM file (no private key).</summary>
    public static X509Certificate2 ReadCertificate(string path)
    {
        var text = ReadText(path, "certificate");
        try { return X509Certificate2.CreateFromPem(text); }
        catch (CryptographicException e) { throw new InvalidDataException($"{path}: not a PEM certificate ({e.Message})", e); }
    }

    /// <summary>A certificate with its private key, from a certificate PEM and a key PEM.</summary>
    public static X509Certificate2 ReadCertificateWithKey(string certificatePath, string keyPath)
    {
        var certificate = ReadText(certificatePath, "certificate");
        var key = ReadText(keyPath, "private key");
        try { return X509Certificate2.CreateFromPem(certificate, key); }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{certificatePath} with key {keyPath}: cannot be loaded as a certificate and its private key ({e.Message}); " +
                "are they a pair from the same kit?", e);
        }
    }

    private static string ReadText(string path, string what) =>
        File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{what} file {path} does not exist", path);
}
