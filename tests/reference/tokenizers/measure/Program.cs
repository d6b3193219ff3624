// Measures how closely each candidate .NET tokenizer library reproduces the golden ids and decodes that
// make_golden.mjs (tokenizers.js) and make_spm_golden.py (sentencepiece) wrote, on the same hard strings.
// Each library gets the best adapter this file can give it; FedLlm's own loader is measured last.
// Usage: dotnet run -c Release --project tests/reference/tokenizers/measure [-- --verbose]

using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FedLlm.Tokenization;
using Microsoft.ML.Tokenizers;

bool verbose = args.Contains("--verbose");
string fixtures = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../../FedLlm.Tests/Fixtures/tokenizers"));
string work = Directory.CreateTempSubdirectory("fedllm-measure-").FullName;
try
{
    string[] jsonFixtures = ["llama3", "qwen3", "mistral", "mistral-metaspace"];
    foreach (string name in jsonFixtures.Append("spm-llama"))
    {
        Materialize(name, Path.Combine(work, name));
    }

    Console.WriteLine("library / fixture: mismatches of n strings (ids, ids with special tokens, decode, decode keeping special tokens)");
    foreach (string name in jsonFixtures)
    {
        MeasureTokenizersDotNet(name);
    }

    foreach (string name in jsonFixtures)
    {
        MeasureMlBpe(name);
    }

    MeasureMlLlama("spm-llama");
    foreach (string name in jsonFixtures.Append("spm-llama"))
    {
        MeasureFedLlm(name);
    }
}
finally
{
    Directory.Delete(work, recursive: true);
}

void MeasureTokenizersDotNet(string name)
{
    // The wrapper always adds special tokens and always skips them in decode: a second copy without a
    // post-processor and without special flags gives the other two modes.
    var json = ReadJson(Path.Combine(work, name, "tokenizer.json"));
    using var full = new Tokenizers.DotNet.Tokenizer(Path.Combine(work, name, "tokenizer.json"));
    json["post_processor"] = null;
    foreach (var t in json["added_tokens"]!.AsArray())
    {
        t!["special"] = false;
    }

    string plainPath = Path.Combine(work, name + ".plain.json");
    File.WriteAllText(plainPath, json.ToJsonString());
    using var plain = new Tokenizers.DotNet.Tokenizer(plainPath);
    Report("Tokenizers.DotNet 1.4.1 (raw)", name, Golden(name),
        c => plain.Encode(c.Text).Select(i => (int)i).ToArray(),
        c => full.Encode(c.Text).Select(i => (int)i).ToArray(),
        c => full.Decode(c.Ids.Select(i => (uint)i).ToArray()),
        c => plain.Decode(c.IdsSpecial.Select(i => (uint)i).ToArray()));
}

void MeasureMlBpe(string name)
{
    var json = ReadJson(Path.Combine(work, name, "tokenizer.json"));
    var model = json["model"]!.AsObject();
    var vocab = model["vocab"]!.AsObject().Select(kv => KeyValuePair.Create(kv.Key, kv.Value!.GetValue<int>())).ToList();
    var merges = model["merges"]!.AsArray()
        .Select(m => m is JsonArray pair ? $"{pair[0]} {pair[1]}" : m!.GetValue<string>()).ToList();
    var added = json["added_tokens"]!.AsArray().ToDictionary(t => t!["content"]!.GetValue<string>(), t => t!["id"]!.GetValue<int>());
    // ML's BpeTokenizer has no post-processor: the BOS that each tokenizer's template adds is prepended here.
    int? bos = name switch { "llama3" => added["<|begin_of_text|>"], "qwen3" => null, _ => added["<s>"] };
    bool byteLevel = json["decoder"]?["type"]?.GetValue<string>() == "ByteLevel";
    BpeOptions options = byteLevel
        ? new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = added,
            PreTokenizer = new RegexPreTokenizer(
                new Regex(json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"]!.GetValue<string>(), RegexOptions.Compiled), added),
            Normalizer = json["normalizer"]?["type"]?.GetValue<string>() == "NFC" ? new NfcNormalizer() : null,
        }
        : new BpeOptions(vocab)
        {
            // SentencePiece-style: "▁" for spaces and a dummy prefix; ML's BPE has no byte fallback.
            Merges = merges,
            SpecialTokens = added,
            UnknownToken = "<unk>",
            FuseUnknownTokens = true,
            Normalizer = new MetaspaceNormalizer(),
            PreTokenizer = new RegexPreTokenizer(new Regex("(?s).+", RegexOptions.Compiled), added),
        };
    var tokenizer = BpeTokenizer.Create(options);
    string Decode(IEnumerable<int> ids, bool skip)
    {
        string text = tokenizer.Decode(ids, considerSpecialTokens: !skip) ?? "";
        text = byteLevel ? text : text.Replace('\u2581', ' ');
        return !byteLevel && text.StartsWith(' ') ? text[1..] : text; // the Strip(1 leading space) decoder
    }

    Report("Microsoft.ML.Tokenizers 2.0.1 BpeTokenizer", name, Golden(name),
        c => tokenizer.EncodeToIds(c.Text).ToArray(),
        c => (bos is int b ? new[] { b } : []).Concat(tokenizer.EncodeToIds(c.Text)).ToArray(),
        c => Decode(c.Ids, skip: true),
        c => Decode(c.IdsSpecial, skip: false));
}

void MeasureMlLlama(string name)
{
    using var stream = File.OpenRead(Path.Combine(work, name, "tokenizer.model"));
    var specials = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
    var tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: specials);
    var golden = Golden(name);
    Report("Microsoft.ML.Tokenizers 2.0.1 LlamaTokenizer", name, golden,
        c => tokenizer.EncodeToIds(c.Text, false, false).ToArray(),
        c => tokenizer.EncodeToIds(c.Text, true, false).ToArray(),
        c => tokenizer.Decode(c.Ids.Where(i => i > 2), considerSpecialTokens: false),
        null);
    // The same, with special tokens split off first and each piece given its dummy prefix as transformers does.
    Report("Microsoft.ML.Tokenizers 2.0.1 LlamaTokenizer, split at specials", name, golden,
        c => Regex.Split(c.Text, "(<unk>|<s>|</s>)").Where(s => s.Length > 0)
            .SelectMany(s => specials.TryGetValue(s, out int id) ? [id]
                : tokenizer.EncodeToIds("\u2581" + s.Replace(' ', '\u2581'), false, false, considerPreTokenization: false, considerNormalization: false))
            .ToArray(),
        null, null, null);
}

void MeasureFedLlm(string name)
{
    var tokenizer = TokenizerLoader.Load(Path.Combine(work, name));
    Report("FedLlm TokenizerLoader", name, Golden(name),
        c => tokenizer.Encode(c.Text).ToArray(),
        c => tokenizer.Encode(c.Text, addSpecialTokens: true).ToArray(),
        c => tokenizer.Decode(c.Ids),
        c => c.DecodedSpecialKept is null ? null : tokenizer.Decode(c.IdsSpecial, skipSpecialTokens: false));
    (tokenizer as IDisposable)?.Dispose();
}

void Report(string library, string name, IReadOnlyList<Case> golden,
    Func<Case, int[]>? ids, Func<Case, int[]>? idsSpecial, Func<Case, string?>? decoded, Func<Case, string?>? decodedKept)
{
    string Count<T>(Func<Case, T>? actual, Func<Case, T> expected, string what)
    {
        if (actual is null)
        {
            return "-";
        }

        int mismatches = 0;
        foreach (var c in golden)
        {
            string a, e = JsonSerializer.Serialize(expected(c));
            try
            {
                a = JsonSerializer.Serialize(actual(c));
            }
            catch (Exception ex)
            {
                a = "error: " + ex.Message;
            }

            if (a != e && e != "null")
            {
                mismatches++;
                if (verbose)
                {
                    Console.WriteLine($"    {what} {JsonSerializer.Serialize(c.Text)}: expected {e}, got {a}");
                }
            }
        }

        return mismatches.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    Console.WriteLine($"{library} / {name}: "
        + $"{Count(ids, c => c.Ids, "ids")}, {Count(idsSpecial, c => c.IdsSpecial, "ids+special")}, "
        + $"{Count(decoded, c => c.Decoded, "decode")}, {Count(decodedKept, c => c.DecodedSpecialKept, "decode-kept")} of {golden.Count}");
}

IReadOnlyList<Case> Golden(string name) =>
    ReadJson(Path.Combine(fixtures, name, "golden.json"))["cases"]!.AsArray().Select(c => new Case(
        c!["text"]!.GetValue<string>(),
        c["ids"]!.AsArray().Select(i => i!.GetValue<int>()).ToArray(),
        c["ids_special"]!.AsArray().Select(i => i!.GetValue<int>()).ToArray(),
        c["decoded"]!.GetValue<string>(),
        c["decoded_special_kept"]?.GetValue<string>())).ToArray();

void Materialize(string name, string folder)
{
    Directory.CreateDirectory(folder);
    string source = Path.Combine(fixtures, name);
    foreach (string file in Directory.EnumerateFiles(source))
    {
        string fileName = Path.GetFileName(file);
        if (fileName.EndsWith(".gz", StringComparison.Ordinal))
        {
            using var input = new GZipStream(File.OpenRead(file), CompressionMode.Decompress);
            using var output = File.Create(Path.Combine(folder, fileName[..^3]));
            input.CopyTo(output);
        }
        else if (fileName == "derive.json")
        {
            var spec = ReadJson(file);
            string baseName = spec["base"]!.GetValue<string>();
            Materialize(baseName, Path.Combine(work, baseName));
            var json = ReadJson(Path.Combine(work, baseName, "tokenizer.json"));
            foreach (var (key, value) in spec["tokenizer_json_overrides"]!.AsObject())
            {
                json[key] = value?.DeepClone();
            }

            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json.ToJsonString());
        }
        else if (fileName != "golden.json")
        {
            File.Copy(file, Path.Combine(folder, fileName), overwrite: true);
        }
    }
}

static JsonObject ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

internal sealed record Case(string Text, int[] Ids, int[] IdsSpecial, string Decoded, string? DecodedSpecialKept);

internal sealed class NfcNormalizer : Normalizer
{
    public override string Normalize(string original) => original.Normalize(NormalizationForm.FormC);

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}

internal sealed class MetaspaceNormalizer : Normalizer
{
    public override string Normalize(string original) => "\u2581" + original.Replace(' ', '\u2581');

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}
