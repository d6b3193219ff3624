using System.Text.Json;
using FedLlm.Data.Templates;
using FedLlm.Data.Templates.Jinja;

namespace FedLlm.Tests.Data.Templates;

/// <summary>
/// Renderings of the real Llama 3 and Qwen3 chat templates (and two small feature templates) by @huggingface/jinja,
/// written by tests/reference/chat_templates/make_golden.mjs; FedLlm's Jinja subset must reproduce them exactly.
/// </summary>
public sealed class JinjaGoldenTests
{
    private static readonly JsonDocument Golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat_templates", "golden.json")));

    public static TheoryData<int> Cases => new(Enumerable.Range(0, Golden.RootElement.GetProperty("cases").GetArrayLength()));

    internal static JsonElement Template(string name) => Golden.RootElement.GetProperty("templates").GetProperty(name);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Rendering_matches_the_reference_implementation(int index)
    {
        var golden = Golden.RootElement.GetProperty("cases")[index];
        var template = Template(golden.GetProperty("template").GetString()!);
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = ToValue(Golden.RootElement.GetProperty("conversations").GetProperty(golden.GetProperty("conversation").GetString()!)),
        };
        foreach (var v in golden.GetProperty("variables").EnumerateObject()) variables[v.Name] = ToValue(v.Value);
        foreach (var token in new[] { "bos_token", "eos_token" })
            if (template.GetProperty(token).ValueKind == JsonValueKind.String) variables[token] = template.GetProperty(token).GetString();

        var rendered = JinjaTemplate.Parse(template.GetProperty("source").GetString()!).Render(variables);

        Assert.Equal(golden.GetProperty("expected").GetString(), rendered);
    }

    [Fact]
    public void The_golden_file_covers_both_real_templates()
    {
        var templates = Golden.RootElement.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("template").GetString()).ToHashSet();

        Assert.Contains("llama3", templates);
        Assert.Contains("qwen3", templates);
        Assert.Contains("<|start_header_id|>", Template("llama3").GetProperty("source").GetString());
        Assert.Contains("namespace(", Template("qwen3").GetProperty("source").GetString());
    }

    /// <summary>JSON as the plain values the renderer takes: dictionaries keep key order, integers are long.</summary>
    private static object? ToValue(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => new OrderedDictionary<string, object?>(e.EnumerateObject().Select(p => KeyValuePair.Create(p.Name, ToValue(p.Value)))),
        JsonValueKind.Array => e.EnumerateArray().Select(ToValue).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };
}
