using FedLlm.Defaults;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Defaults;

/// <summary>The embedded default's cache under concurrent first use (parallel tests, or two commands started at once)
/// and after an interrupted build: every caller gets complete files, and nothing of a staging folder is left.</summary>
public sealed class EmbeddedDefaultCacheTests : IDisposable
{
    readonly TempDirectory dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public async Task Concurrent_first_uses_over_an_interrupted_build_all_get_the_complete_default()
    {
        // What a build killed before its rename could not leave (it builds beside the target), but a copy or a full
        // disk might: the folder without its marker and without its data.
        string root = Path.Combine(dir.Path, "default-" + EmbeddedDefault.Version);
        Directory.CreateDirectory(Path.Combine(root, "model"));

        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => EmbeddedDefault.Ensure(cacheRoot: dir.Path))));

        Assert.All(results, files =>
        {
            Assert.True(File.Exists(files.TrainPath), files.TrainPath);
            Assert.True(File.Exists(files.EvalPath), files.EvalPath);
            Assert.True(File.Exists(Path.Combine(files.ModelDirectory, "config.json")));
        });
        Assert.True(File.Exists(Path.Combine(root, "complete")));
        Assert.Equal([Path.GetFileName(root)], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
    }
}
