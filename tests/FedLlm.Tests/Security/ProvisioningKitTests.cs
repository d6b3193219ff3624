using System.Security.Authentication;
using FedLlm.Security;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Security;

public class ProvisioningKitTests
{
    static IReadOnlyList<KitFile> CreateKit(string dir) =>
        ProvisioningKit.Create(dir, ["localhost", "127.0.0.1"], ["alice", "bob", "carol"], "https://localhost:50051");

    [Fact]
    public void A_kit_loads_back_with_each_participant_proving_its_identity()
    {
        // Prepare
        using var dir = new TempDirectory();

        // Execute
        var written = CreateKit(dir.Path);
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));
        using var bob = ClientKit.Load(Path.Combine(dir.Path, "client-bob"));

        // Assert: every written file exists; the certificate and token of each client name that client and no other.
        Assert.All(written, f => Assert.True(File.Exists(f.Path), f.Path));
        Assert.Equal("alice", alice.ClientId);
        Assert.Equal("bob", bob.ClientId);
        Assert.Equal("alice", server.Authenticate(alice.Certificate, null, null));
        Assert.Equal("alice", server.Authenticate(null, "alice", alice.Token));
        Assert.Throws<AuthenticationException>(() => server.Authenticate(null, "alice", bob.Token));
        Assert.Equal(new[] { "alice", "bob", "carol" }, server.Tokens.Clients);
        Assert.Equal(server.Ca.Thumbprint, alice.Ca.Thumbprint);
        Assert.DoesNotContain(alice.Token!, File.ReadAllText(Path.Combine(dir.Path, "server", ClientTokens.FileName)));
    }

    [Fact]
    public void Keys_and_tokens_are_owner_only_and_the_ca_key_stays_out_of_the_server_and_client_folders()
    {
        using var dir = new TempDirectory();
        var written = CreateKit(dir.Path);

        var secrets = written.Where(f => f.Secret).Select(f => Path.GetRelativePath(dir.Path, f.Path)).Order().ToArray();
        Assert.Equal(new[]
        {
            "ca/ca.key", "client-alice/client.key", "client-alice/token", "client-bob/client.key", "client-bob/token",
            "client-carol/client.key", "client-carol/token", "server/server.key",
        }, secrets);
        if (!OperatingSystem.IsWindows())
            foreach (var secret in written.Where(f => f.Secret))
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secret.Path));
        Assert.Single(Directory.GetFiles(dir.Path, "ca.key", SearchOption.AllDirectories));
    }

    [Fact]
    public void The_config_skeletons_name_the_server_url_and_the_clients()
    {
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        var serverYaml = File.ReadAllText(Path.Combine(dir.Path, "server", "server.yaml"));
        Assert.Contains("  listen: 0.0.0.0:50051\n", serverYaml);
        Assert.Contains("  roster: [alice, bob, carol]\n", serverYaml);
        Assert.Contains("  kit: server ", serverYaml);
        var clientYaml = File.ReadAllText(Path.Combine(dir.Path, "client-bob", "client.yaml"));
        Assert.Contains("client_id: bob\n", clientYaml);
        Assert.Contains("fedllm client --server https://localhost:50051 --config client-bob/client.yaml", clientYaml);
        Assert.Contains("kit: client-bob ", clientYaml);
    }

    [Fact]
    public void Adding_a_client_leaves_the_others_untouched()
    {
        // Prepare
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        string aliceCert = File.ReadAllText(Path.Combine(dir.Path, "client-alice", "client.crt"));
        string aliceToken = File.ReadAllText(Path.Combine(dir.Path, "client-alice", "token")).Trim();

        // Execute
        ProvisioningKit.AddClient(dir.Path, "dave");

        // Assert
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var dave = ClientKit.Load(Path.Combine(dir.Path, "client-dave"));
        Assert.Equal("dave", server.Authenticate(dave.Certificate, "dave", null));
        Assert.Equal("dave", server.Authenticate(null, "dave", dave.Token));
        Assert.Equal(aliceCert, File.ReadAllText(Path.Combine(dir.Path, "client-alice", "client.crt")));
        Assert.True(server.Tokens.Verify("alice", aliceToken));
        Assert.Contains("  roster: [alice, bob, carol, dave]\n", File.ReadAllText(Path.Combine(dir.Path, "server", "server.yaml")));
        Assert.Contains("\"dave\"", File.ReadAllText(Path.Combine(dir.Path, ProvisioningKit.ManifestFileName)));
    }

    [Fact]
    public void An_existing_kit_or_client_is_never_overwritten()
    {
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        Assert.Contains("--add-client", Assert.Throws<InvalidOperationException>(() => CreateKit(dir.Path)).Message);
        Assert.Contains("'bob' already exists", Assert.Throws<InvalidOperationException>(() => ProvisioningKit.AddClient(dir.Path, "bob")).Message);
    }

    [Fact]
    public void Bad_requests_are_refused_before_anything_is_written()
    {
        using var dir = new TempDirectory();
        Assert.Contains("not among the server hosts", Assert.Throws<ArgumentException>(() =>
            ProvisioningKit.Create(dir.Path, ["localhost"], ["alice"], "https://fl.example.org:50051")).Message);
        Assert.Contains("https://", Assert.Throws<ArgumentException>(() =>
            ProvisioningKit.Create(dir.Path, ["localhost"], ["alice"], "http://localhost:50051")).Message);
        Assert.Contains("listed twice", Assert.Throws<ArgumentException>(() =>
            ProvisioningKit.Create(dir.Path, ["localhost"], ["alice", "Alice"], "https://localhost:50051")).Message);
        Assert.Contains("'a b'", Assert.Throws<ArgumentException>(() =>
            ProvisioningKit.Create(dir.Path, ["localhost"], ["a b"], "https://localhost:50051")).Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void A_kit_mixed_up_with_another_kits_ca_fails_to_load_naming_the_file()
    {
        using var first = new TempDirectory();
        using var second = new TempDirectory();
        CreateKit(first.Path);
        CreateKit(second.Path);
        File.Copy(Path.Combine(second.Path, "ca", "ca.crt"), Path.Combine(first.Path, "client-alice", "ca.crt"), overwrite: true);
        var error = Assert.Throws<InvalidDataException>(() => ClientKit.Load(Path.Combine(first.Path, "client-alice")));
        Assert.Contains("client.crt", error.Message);
        Assert.Contains("not issued by this federation's CA", error.Message);
    }

    [Fact]
    public void A_certificate_wins_over_a_claimed_id()
    {
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));
        using var bob = ClientKit.Load(Path.Combine(dir.Path, "client-bob"));

        // Alice's certificate with Bob's name and even Bob's valid token: still not Bob.
        var error = Assert.Throws<AuthenticationException>(() => server.Authenticate(alice.Certificate, "bob", bob.Token));
        Assert.Contains("proves 'alice'", error.Message);
        Assert.Contains("neither", Assert.Throws<AuthenticationException>(() => server.Authenticate(null, "alice", null)).Message);
        Assert.Contains("neither", Assert.Throws<AuthenticationException>(() => server.Authenticate(null, null, alice.Token)).Message);
    }

    [Fact]
    public void A_client_left_off_the_servers_list_is_shut_out_despite_a_valid_certificate_and_token()
    {
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"), ["alice", "carol"]);
        using var alice = ClientKit.Load(Path.Combine(dir.Path, "client-alice"));
        using var bob = ClientKit.Load(Path.Combine(dir.Path, "client-bob"));

        Assert.Equal("alice", server.Authenticate(alice.Certificate, null, null));
        Assert.Contains("'bob' proved its identity but is not among", Assert.Throws<AuthenticationException>(() => server.Authenticate(bob.Certificate, null, null)).Message);
        Assert.Contains("not among", Assert.Throws<AuthenticationException>(() => server.Authenticate(null, "bob", bob.Token)).Message);
        Assert.True(server.TryVerifyClient(alice.Certificate, out var id, out _));
        Assert.Equal("alice", id);
        Assert.False(server.TryVerifyClient(bob.Certificate, out _, out var reason));
        Assert.Contains("'bob' proved its identity but is not among", reason);
    }

    [Fact]
    public void Adding_a_client_extends_a_block_style_roster_the_operator_rewrote()
    {
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        string config = Path.Combine(dir.Path, "server", "server.yaml");
        File.WriteAllText(config, "# mine\nserver:\n  roster:   # who may join\n    - alice\n    - bob\n  min_updates: 2\n");

        ProvisioningKit.AddClient(dir.Path, "dave");

        Assert.Equal("# mine\nserver:\n  roster:   # who may join\n    - alice\n    - bob\n    - dave\n  min_updates: 2\n", File.ReadAllText(config));
    }

    [Fact]
    public void A_client_can_be_reissued_after_deleting_its_folder_and_manifest_entry()
    {
        // Prepare: the documented re-issue path (a lost key): delete client-bob/ and bob's entry in kit.json.
        using var dir = new TempDirectory();
        CreateKit(dir.Path);
        string oldToken = File.ReadAllText(Path.Combine(dir.Path, "client-bob", "token")).Trim();
        using var oldBob = ClientKit.Load(Path.Combine(dir.Path, "client-bob"));
        Directory.Delete(Path.Combine(dir.Path, "client-bob"), recursive: true);
        string manifest = Path.Combine(dir.Path, ProvisioningKit.ManifestFileName);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"bob\",", ""));

        // Execute
        ProvisioningKit.AddClient(dir.Path, "bob");

        // Assert: the new certificate and token replace the old ones (the old certificate is still unexpired and signed by
        // our CA: only the pin refuses it), and the roster does not list bob twice.
        using var server = ServerKit.Load(Path.Combine(dir.Path, "server"));
        using var bob = ClientKit.Load(Path.Combine(dir.Path, "client-bob"));
        Assert.True(server.Tokens.Verify("bob", bob.Token));
        Assert.False(server.Tokens.Verify("bob", oldToken));
        Assert.Equal("bob", server.Authenticate(bob.Certificate, null, null));
        Assert.Equal("bob", ClientIdentity.Verify(oldBob.Certificate, server.Ca));
        Assert.Contains("not its current one", Assert.Throws<AuthenticationException>(() => server.Authenticate(oldBob.Certificate, null, null)).Message);
        Assert.False(server.TryVerifyClient(oldBob.Certificate, out _, out _));
        Assert.Contains("  roster: [alice, bob, carol]\n", File.ReadAllText(Path.Combine(dir.Path, "server", "server.yaml")));
    }
}
