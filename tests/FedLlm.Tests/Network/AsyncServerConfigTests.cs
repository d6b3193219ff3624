using FedLlm.Network;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Network;

/// <summary>server.yaml's async: section: it makes the server run fedbuff with the section's settings, and what only a
/// simulation means (client speeds, concurrency), another algorithm or a negative bound is refused naming the key.</summary>
public class AsyncServerConfigTests
{
    static ServerConfig Load(TempDirectory temp, string asyncSection, string strategy = "") => ServerConfig.Load(temp.File("server.yaml", $"""
        federation:
          rounds: 7
        {strategy}
        async:
        {asyncSection}
        server:
          roster: [a, b, c]
        """));

    [Fact]
    public void An_async_section_runs_fedbuff_with_its_buffer_size_and_staleness_bound()
    {
        using var temp = new TempDirectory();
        var config = Load(temp, "  buffer_size: 2\n  max_staleness: 3\n  staleness: hinge");
        var options = config.ToRunOptions();
        Assert.True(config.IsAsynchronous);
        Assert.Equal(["fedbuff"], options.Algorithms);
        Assert.Equal(2, options.Async!.BufferSize);
        Assert.Equal(3, options.Async.MaxStaleness);
        Assert.Equal("hinge", options.Async.CreateWeight().Name);
        Assert.Equal(7, options.Federation.Rounds);
    }

    [Theory]
    [InlineData("  client_speeds: [1, 5, 1]", "", "async.client_speeds")]
    [InlineData("  concurrency: 2", "", "async.concurrency")]
    [InlineData("  enabled: false", "", "async.enabled is false")]
    [InlineData("  buffer_size: 2", "strategy:\n  algorithms: [fedprox]", "strategy.algorithms lists fedprox")]
    [InlineData("  max_staleness: -1", "", "max_staleness")]
    [InlineData("  buffer_size: 4", "", "async.buffer_size 4 exceeds the 3 clients")]
    public void What_a_server_cannot_run_asynchronously_is_refused_naming_the_key(string asyncSection, string strategy, string expected)
    {
        using var temp = new TempDirectory();
        // ToRunOptions maps; Validate (run before the model loads) checks the values.
        var e = Assert.ThrowsAny<ArgumentException>(() => Load(temp, asyncSection, strategy).ToRunOptions().Validate(FedLlm.Runs.FederatedRun.DefaultAlgorithms));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Min_updates_is_refused_with_fedbuff_and_means_one_when_unset_in_rounds()
    {
        using var temp = new TempDirectory();
        var withAsync = ServerConfig.Load(temp.File("async.yaml", "async:\n  buffer_size: 2\nserver:\n  roster: [a, b, c]\n  min_updates: 2\n"));
        var e = Assert.ThrowsAny<ArgumentException>(() => withAsync.ToRunOptions());
        Assert.Contains("server.min_updates 2 with async", e.Message);
        Assert.Contains("async.buffer_size", e.Message);

        var rounds = ServerConfig.Load(temp.File("rounds.yaml", "server:\n  roster: [a, b, c]\n"));
        Assert.Equal(1, rounds.Server.ToOptions().MinUpdates);
        var two = ServerConfig.Load(temp.File("two.yaml", "server:\n  roster: [a, b, c]\n  min_updates: 2\n"));
        Assert.Equal(2, two.Server.ToOptions().MinUpdates);
    }
}
