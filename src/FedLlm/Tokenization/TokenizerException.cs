namespace FedLlm.Tokenization;

/// <summary>A tokenizer folder or file that cannot be loaded; the message names the folder or file.</summary>
public sealed class TokenizerException : Exception
{
    /// <summary>Creates the exception with a message that says which file or folder is at fault.</summary>
    public TokenizerException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public TokenizerException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
