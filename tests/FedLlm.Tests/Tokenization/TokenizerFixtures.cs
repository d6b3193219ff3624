using System.IO.Compression;
using System.Text.Json.Nodes;
using FedLlm.Tokenization;
using Xunit;

namespace FedLlm.Tests.Tokenization;

/// <summary>
/// The committed tokenizer fixtures (Fixtures/tokenizers/NAME), written by tests/reference/tokenizers/make_golden.mjs
/// and make_spm_golden.py. Big files are committed gzip-compressed and one fixture is derived from another, so a test
/// gets a real checkpoint-like folder through <see cref="Materialize"/>.
/// </summary>
internal static class TokenizerFixtures
{
    public static readonly string[] All = ["llama3", "qwen3", "mistral", "mistral-metaspace", "spm-llama"];

    public static string Source(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", name);

    /// <summary>Writes fixture <paramref name="name"/> into <paramref name="folder"/> as plain checkpoint files.</summary>
    /// <param name="name">The fixture.</param>
    /// <param name="folder">An existing folder.</param>
    /// <param name="include">Which checkpoint file names to write (all by default).</param>
    public static void Materialize(string name, string folder, Func<string, bool>? include = null)
    {
        include ??= _ => true;
        string source = Source(name);
        string derive = Path.Combine(source, "derive.json");
        if (File.Exists(derive) && include("tokenizer.json"))
        {
            // derive.json: {"base": fixture, "tokenizer_json_overrides": {top-level key: value}}
            var spec = JsonNode.Parse(File.ReadAllText(derive))!.AsObject();
            using var scratch = new TempFolder();
            Materialize(spec["base"]!.GetValue<string>(), scratch.Path, f => f == "tokenizer.json");
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(scratch.Path, "tokenizer.json")))!.AsObject();
            foreach (var (key, value) in spec["tokenizer_json_overrides"]!.AsObject())
            {
                json[key] = value?.DeepClone();
            }

            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json.ToJsonString());
        }

        foreach (string file in Directory.EnumerateFiles(source))
        {
            string fileName = Path.GetFileName(file);
            if (fileName is "golden.json" or "derive.json")
            {
                continue;
            }

            if (fileName.EndsWith(".gz", StringComparison.Ordinal))
            {
                if (include(fileName[..^3]))
                {
                    using var input = new GZipStream(File.OpenRead(file), CompressionMode.Decompress);
                    using var output = File.Create(Path.Combine(folder, fileName[..^3]));
                    input.CopyTo(output);
                }
            }
            else if (include(fileName))
            {
                File.Copy(file, Path.Combine(folder, fileName));
            }
        }
    }

    public static ITextTokenizer Load(string name)
    {
        using var folder = new TempFolder();
        Materialize(name, folder.Path);
        return TokenizerLoader.Load(folder.Path);
    }

    public static IReadOnlyList<GoldenCase> Golden(string name)
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(Source(name), "golden.json")))!;
        return root["cases"]!.AsArray().Select(c => new GoldenCase(
            c!["text"]!.GetValue<string>(),
            Ints(c["ids"]),
            Ints(c["ids_special"]),
            c["decoded"]!.GetValue<string>(),
            c["decoded_special_kept"]?.GetValue<string>(),
            c["decoded_special_skipped"]?.GetValue<string>())).ToArray();

        static int[] Ints(JsonNode? node) => node!.AsArray().Select(i => i!.GetValue<int>()).ToArray();
    }
}

/// <summary>One hard string and what the reference implementation made of it.</summary>
/// <param name="Text">The input.</param>
/// <param name="Ids">encode(text, add_special_tokens=False).</param>
/// <param name="IdsSpecial">encode(text, add_special_tokens=True).</param>
/// <param name="Decoded">decode(Ids, skip_special_tokens=True).</param>
/// <param name="DecodedSpecialKept">decode(IdsSpecial, skip_special_tokens=False), where the golden has it.</param>
/// <param name="DecodedSpecialSkipped">decode(IdsSpecial, skip_special_tokens=True), where the golden has it.</param>
internal sealed record GoldenCase(
    string Text, int[] Ids, int[] IdsSpecial, string Decoded, string? DecodedSpecialKept, string? DecodedSpecialSkipped);

/// <summary>A temporary folder, deleted with its contents on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"fedllm-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>Each fixture tokenizer loaded once for all tests: Llama 3's takes about a second to load.</summary>
public sealed class LoadedTokenizers : IDisposable
{
    private readonly Dictionary<string, Lazy<ITextTokenizer>> _tokenizers =
        TokenizerFixtures.All.ToDictionary(n => n, n => new Lazy<ITextTokenizer>(() => TokenizerFixtures.Load(n)));

    public ITextTokenizer this[string name] => _tokenizers[name].Value;

    public void Dispose()
    {
        foreach (var tokenizer in _tokenizers.Values.Where(l => l.IsValueCreated))
        {
            (tokenizer.Value as IDisposable)?.Dispose();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class TokenizerCollection : ICollectionFixture<LoadedTokenizers>
{
    public const string Name = "Tokenizers";
}
