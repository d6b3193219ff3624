using System.Runtime.CompilerServices;

namespace FedLlm.Tests.Defaults;

/// <summary>Locates the committed fixtures next to this source file.</summary>
/// <remarks>Read from the source tree rather than the build output: the node script that produces the golden ids
/// writes here, and the update mode of the tests writes here too.</remarks>
internal static class DefaultsFixtures
{
    /// <summary>Set to 1 to rewrite the committed fixtures from the current code instead of comparing.</summary>
    public const string UpdateVariable = "FEDLLM_UPDATE_GOLDEN";

    public static bool Update => Environment.GetEnvironmentVariable(UpdateVariable) == "1";

    public static string TokenizerDirectory => Path.Combine(SourceDirectory(), "Fixtures", "default_tokenizer");

    private static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
