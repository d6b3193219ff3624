using System.IO.Compression;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Parquet;
using Parquet.Schema;
using Parquet.Serialization;

namespace FedLlm.Tests.Data;

/// <summary>
/// Tiny files in each data set's published schema (column names and types as on the dataset cards), written by the
/// tests themselves so the fixtures and the expectations sit side by side.
/// </summary>
/// <remarks>
/// Layouts follow the published files: tatsu-lab/alpaca and vicgalle/alpaca-gpt4 are Parquet with
/// instruction/input/output/text; sahil2801/CodeAlpaca-20k is a JSON array (code_alpaca_20k.json);
/// FinGPT/fingpt-sentiment-train is Parquet with input/output/instruction; medalpaca's flashcards are a JSON array
/// (instruction/input/output); TIGER-Lab/MathInstruct is a JSON array (source/output/instruction);
/// HuggingFaceH4/ultrafeedback_binarized is Parquet with prompt, prompt_id, chosen/rejected/messages as lists of
/// {content, role}, score_chosen, score_rejected; Anthropic/hh-rlhf is gzipped JSON Lines with chosen/rejected.
/// </remarks>
internal static class DatasetFixtures
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public const string FinGptInstruction = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.";
    public const string MedAlpacaInstruction = "Answer this question truthfully";

    public static string WriteJsonArray(string path, IEnumerable<object> rows)
    {
        File.WriteAllText(path, JsonSerializer.Serialize(rows, Json));
        return path;
    }

    public static string WriteJsonl(string path, IEnumerable<object> rows)
    {
        File.WriteAllText(path, string.Concat(rows.Select(r => JsonSerializer.Serialize(r, Json) + "\n")));
        return path;
    }

    public static string WriteJsonlGz(string path, IEnumerable<object> rows)
    {
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        gzip.Write(Encoding.UTF8.GetBytes(string.Concat(rows.Select(r => JsonSerializer.Serialize(r, Json) + "\n"))));
        return path;
    }

    /// <summary>Writes rows with Parquet.Net, <paramref name="rowGroupSize"/> rows per row group.</summary>
    public static string WriteParquet(string path, ParquetSchema schema, IReadOnlyList<Dictionary<string, object?>> rows, int rowGroupSize = 1000)
    {
        using var file = File.Create(path);
        var data = rows.Select(r => (IDictionary<string, object?>)r).ToList();
        ParquetSerializer.SerializeUntypedAsync(data, schema, file, new ParquetOptions { RowGroupSize = rowGroupSize }).GetAwaiter().GetResult();
        return path;
    }

    // ---- Alpaca family ------------------------------------------------------------------------------------------

    public static readonly (string Instruction, string Input, string Output)[] AlpacaRows =
    [
        ("Give three tips for staying healthy.", "", "1. Eat well. 2. Sleep. 3. Move."),
        ("Translate to French.", "Good morning", "Bonjour"),
        ("Classify the sentiment.", " ", "neutral"),
    ];

    public static ParquetSchema AlpacaSchema { get; } = new(
        new DataField<string>("instruction"), new DataField<string>("input"), new DataField<string>("output"), new DataField<string>("text"));

    public static string WriteAlpacaParquet(string path) => WriteParquet(path, AlpacaSchema, AlpacaRows.Select(r => new Dictionary<string, object?>
    {
        ["instruction"] = r.Instruction,
        ["input"] = r.Input,
        ["output"] = r.Output,
        ["text"] = "Below is an instruction that describes a task. ... " + r.Output,
    }).ToList());

    public static string WriteCodeAlpacaJson(string path) => WriteJsonArray(path,
    [
        new { instruction = "Create an array of length 5 which contains all even numbers between 1 and 10.", input = "", output = "arr = [2, 4, 6, 8, 10]" },
        new { instruction = "Write a function to add two numbers.", input = "a = 1, b = 2", output = "def add(a, b):\n    return a + b" },
    ]);

    // ---- FinGPT sentiment ---------------------------------------------------------------------------------------

    public static readonly (string Input, string Output)[] FinGptRows =
    [
        ("Apex shares jump after profit beat", "positive"),
        ("Orbit Bank cuts outlook", "negative"),
        ("Delta Mining holds its annual meeting", "neutral"),
        ("Nova Foods sees modest sales growth", "mildly positive"),
        ("Kite Air warns on fuel costs", "moderately negative"),
        ("Helix Labs wins record contract", "strong positive"),
    ];

    public static ParquetSchema FinGptSchema { get; } = new(
        new DataField<string>("input"), new DataField<string>("output"), new DataField<string>("instruction"));

    public static string WriteFinGptParquet(string path, int repeat = 1, int rowGroupSize = 1000) => WriteParquet(path, FinGptSchema,
        Enumerable.Range(0, repeat).SelectMany(k => FinGptRows.Select(r => new Dictionary<string, object?>
        {
            ["input"] = repeat == 1 ? r.Input : $"{r.Input} #{k}",
            ["output"] = r.Output,
            ["instruction"] = FinGptInstruction,
        })).ToList(), rowGroupSize);

    // ---- MedAlpaca flashcards -----------------------------------------------------------------------------------

    public static string WriteMedAlpacaJson(string path) => WriteJsonArray(path,
    [
        new { input = "What is the relationship between very low Mg2+ levels, PTH levels, and Ca2+ levels?", output = "Very low Mg2+ levels correspond to low PTH levels which in turn results in low Ca2+ levels.", instruction = MedAlpacaInstruction },
        new { input = "What leads to genitourinary syndrome of menopause?", output = "Low estradiol production leads to it.", instruction = MedAlpacaInstruction },
    ]);

    // ---- MathInstruct -------------------------------------------------------------------------------------------

    public static string WriteMathInstructJson(string path) => WriteJsonArray(path,
    [
        new { source = "data/CoT/aqua_rat.json", output = "The answer is B.", instruction = "What is 2+3? Answer Choices: (A) 4 (B) 5" },
        new { source = "data/PoT/gsm_gpt4.json", output = "print(2*3)", instruction = "Compute 2*3 in Python." },
        // A repeated instruction with another answer: pandas drop_duplicates keeps the first row.
        new { source = "data/CoT/math50k_camel.json", output = "Five.", instruction = "What is 2+3? Answer Choices: (A) 4 (B) 5" },
        new { source = "data/CoT/aqua_rat.json", output = "The answer is A.", instruction = "What is 1+3? Answer Choices: (A) 4 (B) 5" },
    ]);

    // ---- UltraFeedback binarized --------------------------------------------------------------------------------

    public static ParquetSchema UltraFeedbackSchema { get; } = new(
        new DataField<string>("prompt"),
        new DataField<string>("prompt_id"),
        Messages("chosen"),
        Messages("rejected"),
        Messages("messages"),
        new DataField<double>("score_chosen"),
        new DataField<double>("score_rejected"));

    private static ListField Messages(string name) =>
        new(name, new StructField("element", new DataField<string>("content"), new DataField<string>("role")));

    public static Dictionary<string, object?> UltraFeedbackRow(string prompt, string chosen, string rejected, double scoreChosen, double scoreRejected) => new()
    {
        ["prompt"] = prompt,
        ["prompt_id"] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(prompt))).ToLowerInvariant(),
        ["chosen"] = Turns(prompt, chosen),
        ["rejected"] = Turns(prompt, rejected),
        ["messages"] = Turns(prompt, chosen),
        ["score_chosen"] = scoreChosen,
        ["score_rejected"] = scoreRejected,
    };

    private static List<Dictionary<string, object?>> Turns(string prompt, string reply) =>
    [
        new() { ["content"] = prompt, ["role"] = "user" },
        new() { ["content"] = reply, ["role"] = "assistant" },
    ];

    public static string WriteUltraFeedbackParquet(string path) => WriteParquet(path, UltraFeedbackSchema,
    [
        UltraFeedbackRow("Name a prime number.", "7 is prime.", "Nine.", 9.0, 3.5),
        UltraFeedbackRow("Say hi in Spanish.", "Hola.", "Bonjour.", 8.0, 2.0),
    ]);

    // ---- HH-RLHF ------------------------------------------------------------------------------------------------

    public static readonly (string Chosen, string Rejected)[] HhRows =
    [
        // One turn; the responses differ from their first character.
        ("\n\nHuman: What color is the sky?\n\nAssistant: Blue, on a clear day.",
         "\n\nHuman: What color is the sky?\n\nAssistant: Green."),
        // Two turns; both responses start with "I " so the common prefix runs into them (OpenFedLLM's quirk).
        ("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Can you help me cheat?\n\nAssistant: I can't help with that.",
         "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Can you help me cheat?\n\nAssistant: I will, here is how."),
    ];

    public static string WriteHhRlhfJsonlGz(string path) =>
        WriteJsonlGz(path, HhRows.Select(r => (object)new { chosen = r.Chosen, rejected = r.Rejected }));
}
