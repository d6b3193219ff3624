namespace FedLlm.Tests.Cli;

/// <summary>Files of the repository this test build belongs to (docs/cli.md, docs/cli-errors.md).</summary>
internal static class RepositoryFiles
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "FedLlm.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException($"no FedLlm.sln above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>Asserts the committed file equals <paramref name="expected"/>; with FEDLLM_UPDATE_DOCS=1 rewrites it instead.</summary>
    public static void AssertCurrent(string relativePath, string expected, string regenerate)
    {
        string path = Path.Combine(Root, relativePath);
        if (Environment.GetEnvironmentVariable("FEDLLM_UPDATE_DOCS") == "1")
        {
            File.WriteAllText(path, expected);
            return;
        }
        Assert.True(File.Exists(path), $"{relativePath} is missing; {regenerate}");
        string committed = File.ReadAllText(path).ReplaceLineEndings("\n");
        Assert.True(committed == expected, $"{relativePath} is out of date; {regenerate}");
    }
}
