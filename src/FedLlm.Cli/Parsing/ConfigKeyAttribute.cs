namespace FedLlm.Cli.Parsing;

/// <summary>
/// The run.yaml key a flag sets (e.g. <c>--rounds</c> ⇔ <c>federation.rounds</c>). The flag takes the key's range and
/// names from <see cref="Runs.RunConfigSchema"/>, sets it over the YAML, and is reported as the key's origin.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ConfigKeyAttribute(string path) : Attribute
{
    public string Path { get; } = path;
}
