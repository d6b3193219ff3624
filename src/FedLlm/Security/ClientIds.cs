using System.Text.RegularExpressions;

namespace FedLlm.Security;

/// <summary>
/// The rule for client ids: 1–64 of [A-Za-z0-9._-]. Ids become certificate names, URI paths, folder names
/// (client-{id}/) and log fields, so nothing that needs escaping in any of them is allowed.
/// </summary>
public static partial class ClientIds
{
    /// <summary>The longest id, in characters.</summary>
    public const int MaxLength = 64;

    [GeneratedRegex(@"\A[A-Za-z0-9._-]{1,64}\z", RegexOptions.CultureInvariant)] // \z, not $: $ also matches before a final newline
    private static partial Regex Pattern();

    /// <summary>Whether <paramref name="clientId"/> is 1–64 letters, digits, '.', '_' or '-' and not "." or "..": safe
    /// as a folder name, a URI part and a log field.</summary>
    public static bool IsValid(string? clientId) => clientId is not null && Pattern().IsMatch(clientId) && clientId is not "." and not "..";

    /// <summary>Returns <paramref name="clientId"/> when valid.</summary>
    /// <exception cref="ArgumentException">The id breaks the rule; the message quotes it and states the rule.</exception>
    public static string Validate(string? clientId, string parameterName = "clientId") =>
        IsValid(clientId) ? clientId! : throw new ArgumentException(
            $"client id '{clientId}' is not allowed: use 1–{MaxLength} letters, digits, '.', '_' or '-' (and not '.' or '..')", parameterName);
}
