using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FedLlm.Security;

namespace FedLlm.Tests.Security;

public class ClientIdentityTests
{
    // Created a year ago, so it can issue certificates that have already expired.
    static readonly CertificateAuthority Ca = CertificateAuthority.Create("Test CA", DateTimeOffset.UtcNow.AddDays(-365), DateTimeOffset.UtcNow.AddDays(365));
    static readonly CertificateAuthority OtherCa = CertificateAuthority.Create();

    [Fact]
    public void An_issued_client_certificate_verifies_and_yields_its_id()
    {
        using var alice = Ca.IssueClientCertificate("alice");
        Assert.Equal("alice", ClientIdentity.Verify(alice, Ca.Certificate));
    }

    [Fact]
    public void The_public_certificate_alone_verifies_as_the_server_receives_it()
    {
        using var alice = Ca.IssueClientCertificate("alice");
        using var publicOnly = X509CertificateLoader.LoadCertificate(alice.RawData);
        Assert.Equal("alice", ClientIdentity.Verify(publicOnly, Ca.Certificate));
    }

    [Fact]
    public void A_certificate_from_another_ca_is_refused()
    {
        using var impostor = OtherCa.IssueClientCertificate("alice");
        var error = Assert.Throws<AuthenticationException>(() => ClientIdentity.Verify(impostor, Ca.Certificate));
        Assert.Contains("not issued by this federation's CA", error.Message);
        Assert.Contains("CN=alice", error.Message);
    }

    [Fact]
    public void A_server_certificate_is_refused_as_a_client_certificate()
    {
        using var server = Ca.IssueServerCertificate(["localhost"]);
        var error = Assert.Throws<AuthenticationException>(() => ClientIdentity.Verify(server, Ca.Certificate));
        Assert.Contains("clientAuth", error.Message);
    }

    [Fact]
    public void An_expired_certificate_is_refused_and_a_future_one_too()
    {
        var now = DateTimeOffset.UtcNow;
        using var expired = Ca.IssueClientCertificate("alice", now.AddDays(-30), now.AddDays(-1));
        Assert.Contains("expired", Assert.Throws<AuthenticationException>(() => ClientIdentity.Verify(expired, Ca.Certificate)).Message);
        using var future = Ca.IssueClientCertificate("alice", now.AddDays(1), now.AddDays(30));
        Assert.Contains("not valid before", Assert.Throws<AuthenticationException>(() => ClientIdentity.Verify(future, Ca.Certificate)).Message);
    }

    [Fact]
    public void The_ca_certificate_itself_is_not_a_client()
    {
        var error = Assert.Throws<AuthenticationException>(() => ClientIdentity.Verify(Ca.Certificate, Ca.Certificate));
        Assert.Contains("is a CA certificate", error.Message);
    }

    [Fact]
    public void Without_the_uri_the_id_comes_from_the_common_name()
    {
        // Prepare: a clientAuth leaf signed by our CA whose only name is CN=bob (as other tools might issue).
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=bob", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(CertificateAuthority.ClientAuthOid)], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Ca.Certificate, true, false));
        using var bob = request.Create(Ca.Certificate, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1), [0x42, 1, 2, 3]);

        Assert.Equal("bob", ClientIdentity.Verify(bob, Ca.Certificate));
    }

    [Fact]
    public void The_server_certificate_check_accepts_ours_and_refuses_the_rest()
    {
        var now = DateTime.UtcNow;
        using var server = Ca.IssueServerCertificate(["localhost"]);
        using var foreign = OtherCa.IssueServerCertificate(["localhost"]);
        using var client = Ca.IssueClientCertificate("alice");
        // The platform always reports chain errors for a CA outside the system store; they must not matter.
        var chainErrors = SslPolicyErrors.RemoteCertificateChainErrors;

        Assert.Null(ServerCertificateValidation.Problem(server, chainErrors, Ca.Certificate, now));
        Assert.Contains("not issued by this federation's CA", ServerCertificateValidation.Problem(foreign, chainErrors, Ca.Certificate, now));
        Assert.Contains("not issued for server authentication", ServerCertificateValidation.Problem(client, chainErrors, Ca.Certificate, now));
        Assert.Contains("does not name the host", ServerCertificateValidation.Problem(server, chainErrors | SslPolicyErrors.RemoteCertificateNameMismatch, Ca.Certificate, now));
        Assert.Contains("no certificate", ServerCertificateValidation.Problem(null, SslPolicyErrors.RemoteCertificateNotAvailable, Ca.Certificate, now));
    }
}
