using System.Globalization;

namespace FedLlm.Bench;

/// <summary>"--name value" options of the benchmark subcommands that take free-form arguments.</summary>
public static class BenchArguments
{
    public static string String(IReadOnlyList<string> arguments, string name, string fallback)
    {
        int index = arguments.ToList().IndexOf(name);
        return index >= 0 && index + 1 < arguments.Count ? arguments[index + 1] : fallback;
    }

    public static int Int(IReadOnlyList<string> arguments, string name, int fallback) =>
        int.Parse(String(arguments, name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
}
