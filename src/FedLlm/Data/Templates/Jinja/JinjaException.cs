namespace FedLlm.Data.Templates.Jinja;

/// <summary>A chat template that cannot be parsed or rendered, or that called <c>raise_exception</c>.</summary>
public sealed class JinjaException : Exception
{
    /// <summary>Creates the exception.</summary>
    public JinjaException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
