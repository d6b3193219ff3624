using System.Text.Json.Nodes;
using FedLlm.Security;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Security;

public class ClientTokensTests
{
    [Fact]
    public void A_token_verifies_for_its_client_only()
    {
        var tokens = new ClientTokens();
        string alice = tokens.Issue("alice"), bob = tokens.Issue("bob");

        Assert.Equal(43, alice.Length); // 32 bytes, base64url without padding
        Assert.NotEqual(alice, bob);
        Assert.True(tokens.Verify("alice", alice));
        Assert.False(tokens.Verify("alice", bob));
        Assert.False(tokens.Verify("carol", alice));
        Assert.False(tokens.Verify("alice", alice[..^1] + (alice[^1] == 'A' ? 'B' : 'A')));
        Assert.False(tokens.Verify("alice", ""));
        Assert.False(tokens.Verify(null, alice));
    }

    [Fact]
    public void Reissuing_revokes_the_old_token()
    {
        var tokens = new ClientTokens();
        string first = tokens.Issue("alice");
        string second = tokens.Issue("alice");
        Assert.False(tokens.Verify("alice", first));
        Assert.True(tokens.Verify("alice", second));
    }

    [Fact]
    public void The_file_holds_hashes_only_and_loads_back()
    {
        // Prepare
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, ClientTokens.FileName);
        var tokens = new ClientTokens();
        string alice = tokens.Issue("alice"), bob = tokens.Issue("bob");

        // Execute
        tokens.Save(path);
        var loaded = ClientTokens.Load(path);

        // Assert
        var text = File.ReadAllText(path);
        Assert.DoesNotContain(alice, text);
        Assert.DoesNotContain(bob, text);
        Assert.Equal(new[] { "alice", "bob" }, loaded.Clients);
        Assert.True(loaded.Verify("alice", alice));
        Assert.True(loaded.Verify("bob", bob));
        Assert.False(loaded.Verify("bob", alice));
    }

    [Fact]
    public void A_malformed_entry_is_named()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, ClientTokens.FileName);
        new ClientTokens().Save(path);
        var document = JsonNode.Parse(File.ReadAllText(path))!;
        document["clients"]!["mallory"] = "not-a-hash";
        File.WriteAllText(path, document.ToJsonString());

        var error = Assert.Throws<InvalidDataException>(() => ClientTokens.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("'mallory'", error.Message);
    }
}
