namespace FedLlm.Data.Templates;

/// <summary>One turn of a dialogue, in the role names chat templates use.</summary>
/// <param name="Role">"system", "user" or "assistant" (<see cref="User"/>, <see cref="Assistant"/>, <see cref="System"/>).</param>
/// <param name="Content">The turn's text.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>The user's role name.</summary>
    public const string User = "user";

    /// <summary>The assistant's role name.</summary>
    public const string Assistant = "assistant";

    /// <summary>The system prompt's role name.</summary>
    public const string System = "system";
}
