using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Modeling;

/// <summary>The name a model folder goes by, for adapter_config.json and for the model a server offers.</summary>
public static class ModelName
{
    /// <summary>
    /// config.json's <c>_name_or_path</c> when it is a hub name such as "HuggingFaceTB/SmolLM-135M" (not a local path),
    /// else the folder's own name: never an absolute path of this machine, which means nothing on another.
    /// </summary>
    public static string Of(string modelDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        string full = Path.GetFullPath(modelDirectory).TrimEnd(Path.DirectorySeparatorChar);
        string config = Path.Combine(full, "config.json");
        if (File.Exists(config))
        {
            try
            {
                if (JsonNode.Parse(File.ReadAllText(config))?["_name_or_path"] is JsonValue v && v.TryGetValue<string>(out var name)
                    && IsHubName(name))
                    return name;
            }
            catch (JsonException) { } // an unreadable config names nothing; the folder name stands (the loader reports the error)
        }
        return Path.GetFileName(full);
    }

    /// <summary>"org/name" or "name": no rooted path, no ./ or ../, no backslash, no empty part.</summary>
    public static bool IsHubName(string name) =>
        name.Length > 0 && !Path.IsPathRooted(name) && !name.StartsWith('.') && !name.Contains('\\') && !name.Contains("//")
        && name.Split('/').Length <= 2 && !name.EndsWith('/') && !name.Contains(':');
}
