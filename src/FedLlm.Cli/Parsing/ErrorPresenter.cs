using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using FedLlm.Configuration;
using Spectre.Console.Cli;

namespace FedLlm.Cli.Parsing;

/// <summary>
/// The one place where a failure of any command becomes what the user reads: one clean line per problem ("error: …"),
/// optional hints, and a non-zero exit code. .NET and libtorch internals (parameter suffixes, generic type names,
/// assembly versions, stack and C++ frames) never reach the user; FEDLLM_DEBUG=1 adds the full exception.
/// </summary>
public static partial class ErrorPresenter
{
    /// <summary>Exit code of bad input (a flag, a key, a value, a file the user named).</summary>
    public const int UsageError = 2;

    /// <summary>Exit code of a failure while working.</summary>
    public const int RuntimeError = 1;

    /// <summary>Writes <paramref name="exception"/> to <paramref name="error"/>; returns the exit code.</summary>
    public static int Present(Exception exception, TextWriter error)
    {
        var (lines, hints, code) = Describe(exception);
        foreach (var line in lines) error.WriteLine($"error: {line}");
        foreach (var hint in hints) error.WriteLine($"  hint: {hint}");
        if (Environment.GetEnvironmentVariable("FEDLLM_DEBUG") == "1") error.WriteLine(exception.ToString());
        else if (code == RuntimeError && exception is not ConfigurationException) error.WriteLine("  hint: FEDLLM_DEBUG=1 shows the full exception");
        return code;
    }

    /// <summary>The lines, hints and exit code for <paramref name="exception"/>.</summary>
    public static (IReadOnlyList<string> Lines, IReadOnlyList<string> Hints, int ExitCode) Describe(Exception exception)
    {
        var e = Unwrap(exception);
        switch (e)
        {
            case ConfigurationException c:
                return (Lines(c.Message), c.Hints.Select(Scrub).ToList(), UsageError);
            case CommandAppException:
                return (Lines(SpectreMessage(e.Message)), ["fedllm --help lists the commands; fedllm COMMAND --help its options"], UsageError);
            case OperationCanceledException:
                return (["cancelled"], [], RuntimeError);
            case OutOfMemoryException or InsufficientExecutionStackException:
                return (["out of memory: try a smaller --batch-size or --max-length, or --base-dtype nf4"], [], RuntimeError);
            case ExternalException when IsTorch(e):
                return ([$"libtorch: {Scrub(e.Message)}"], ["the model or input does not fit what libtorch was asked to do; check the settings above"], RuntimeError);
            case FileNotFoundException or DirectoryNotFoundException or InvalidDataException or ArgumentException or FormatException or IOException
                or UnauthorizedAccessException or System.Text.Json.JsonException or NotSupportedException:
                return (Lines(e.Message), [], UsageError);
            default:
                return (Lines(e.Message), [], RuntimeError);
        }
    }

    static Exception Unwrap(Exception e)
    {
        while (true)
        {
            switch (e)
            {
                case AggregateException { InnerExceptions.Count: 1 } a: e = a.InnerExceptions[0]; continue;
                case TargetInvocationException { InnerException: { } inner }: e = inner; continue;
                case TypeInitializationException { InnerException: { } inner }: e = inner; continue;
                case CommandRuntimeException { InnerException: { } inner } when inner is not CommandAppException: e = inner; continue;
                default: return e;
            }
        }
    }

    static bool IsTorch(Exception e) =>
        e.GetType().Namespace?.StartsWith("TorchSharp", StringComparison.Ordinal) == true || e.Message.Contains("Exception raised from", StringComparison.Ordinal)
        || e.StackTrace?.Contains("TorchSharp", StringComparison.Ordinal) == true;

    static IReadOnlyList<string> Lines(string message) =>
        message.Split('\n').Select(Scrub).Where(l => l.Length > 0).DefaultIfEmpty("failed (no message)").ToList();

    /// <summary>Spectre's own parse messages, reworded where they would show .NET type names.</summary>
    static string SpectreMessage(string message)
    {
        var m = FailedToConvert().Match(message);
        return m.Success ? $"'{m.Groups[1].Value}' is not a valid value for this option" : message;
    }

    /// <summary>One line without .NET or libtorch internals.</summary>
    public static string Scrub(string text)
    {
        // A libtorch message ends with the C++ frames after "Exception raised from …".
        int frames = text.IndexOf("Exception raised from", StringComparison.Ordinal);
        if (frames >= 0) text = text[..frames];
        int frameList = text.IndexOf("frame #", StringComparison.Ordinal);
        if (frameList >= 0) text = text[..frameList];
        text = ParameterSuffix().Replace(text, "");
        text = ActualValue().Replace(text, "");
        text = AssemblyQualifier().Replace(text, "");
        text = FailedToConvert().Replace(text, "'$1' is not a valid value");
        text = GenericArity().Replace(text, "value");
        text = SystemType().Replace(text, m => m.Groups[1].Value switch
        {
            "Int32" or "Int64" => "whole number",
            "Double" or "Single" => "number",
            "Boolean" => "true/false",
            "String" => "text",
            var other => other,
        });
        text = StackFrame().Replace(text, "");
        return Whitespace().Replace(text, " ").Trim().TrimEnd('.').Trim();
    }

    [GeneratedRegex(@"\s*\(Parameter '[^']*'\)")] private static partial Regex ParameterSuffix();
    [GeneratedRegex(@"\s*Actual value was [^\n]*")] private static partial Regex ActualValue();
    [GeneratedRegex(@",\s*(System\.Private\.CoreLib|[\w.]+),\s*Version=[^,\]]*(,\s*Culture=[^,\]]*)?(,\s*PublicKeyToken=[^,\]\s]*)?")] private static partial Regex AssemblyQualifier();
    [GeneratedRegex(@"Failed to convert '([^']*)' to [^\s.]+(\.[^\s]+)*")] private static partial Regex FailedToConvert();
    [GeneratedRegex(@"\b[A-Za-z_.]+`\d+(\[[^\]]*\])?")] private static partial Regex GenericArity();
    [GeneratedRegex(@"\bSystem\.(?:\w+\.)*(\w+)")] private static partial Regex SystemType();
    [GeneratedRegex(@"\s+at [\w.<>`]+\(.*")] private static partial Regex StackFrame();
    [GeneratedRegex(@"\s+")] private static partial Regex Whitespace();
}
