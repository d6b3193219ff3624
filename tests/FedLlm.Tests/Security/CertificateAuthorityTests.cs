using System.Net;
using System.Security.Cryptography.X509Certificates;
using FedLlm.Security;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Security;

public class CertificateAuthorityTests
{
    [Fact]
    public void A_new_ca_is_a_self_signed_p256_ca_for_about_ten_years()
    {
        using var ca = CertificateAuthority.Create();
        var certificate = ca.Certificate;
        Assert.Equal(certificate.Subject, certificate.Issuer);
        Assert.True(certificate.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.True(certificate.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign));
        using var key = certificate.GetECDsaPublicKey()!;
        Assert.Equal(256, key.KeySize);
        var years = (certificate.NotAfter - certificate.NotBefore).TotalDays / 365.25;
        Assert.InRange(years, 9.9, 10.1);
    }

    [Fact]
    public void The_ca_saves_as_pem_with_an_owner_only_key_and_loads_back_able_to_sign()
    {
        // Prepare
        using var dir = new TempDirectory();
        using var original = CertificateAuthority.Create();

        // Execute
        original.Save(dir.Path);
        using var loaded = CertificateAuthority.Load(dir.Path);
        using var issued = loaded.IssueClientCertificate("alice");

        // Assert: the same CA, and what the loaded key signs verifies against the original certificate.
        Assert.Equal(original.Certificate.Thumbprint, loaded.Certificate.Thumbprint);
        Assert.StartsWith("-----BEGIN CERTIFICATE-----", File.ReadAllText(Path.Combine(dir.Path, "ca.crt")));
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", File.ReadAllText(Path.Combine(dir.Path, "ca.key")));
        Assert.Equal("alice", ClientIdentity.Verify(issued, original.Certificate));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir.Path, "ca.key")));
    }

    [Fact]
    public void A_server_certificate_names_every_host_and_ip_and_is_for_server_auth()
    {
        using var ca = CertificateAuthority.Create();
        using var server = ca.IssueServerCertificate(["localhost", "127.0.0.1", "fl.example.org", "::1"]);
        var names = server.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(new[] { "localhost", "fl.example.org" }, names.EnumerateDnsNames());
        Assert.Equal(new[] { IPAddress.Loopback, IPAddress.IPv6Loopback }, names.EnumerateIPAddresses());
        var usages = server.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages;
        Assert.Equal("1.3.6.1.5.5.7.3.1", Assert.Single(usages.Cast<System.Security.Cryptography.Oid>()).Value);
        Assert.False(server.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
    }

    [Fact]
    public void A_client_certificate_carries_its_id_as_cn_and_uri()
    {
        using var ca = CertificateAuthority.Create();
        using var client = ca.IssueClientCertificate("hospital-7.eu_west");
        Assert.Equal("CN=hospital-7.eu_west", client.Subject);
        Assert.Contains("fedllm://client/hospital-7.eu_west", client.Extensions["2.5.29.17"]!.Format(false));
        Assert.True(client.HasPrivateKey);
    }

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("alice/bob")]
    [InlineData("al ice")]
    [InlineData("ålice")]
    [InlineData("alice\n")] // a regex ending in $ would accept this
    [InlineData("a1234567890123456789012345678901234567890123456789012345678901234")] // 65 characters
    public void Bad_client_ids_are_refused_quoting_the_id(string id)
    {
        using var ca = CertificateAuthority.Create();
        var error = Assert.Throws<ArgumentException>(() => ca.IssueClientCertificate(id));
        Assert.Contains($"'{id}'", error.Message);
    }

    [Fact]
    public void Server_hosts_that_are_neither_dns_names_nor_ips_are_refused()
    {
        using var ca = CertificateAuthority.Create();
        var error = Assert.Throws<ArgumentException>(() => ca.IssueServerCertificate(["local host"]));
        Assert.Contains("'local host'", error.Message);
    }
}
