using FedLlm.Runtime;
using FedLlm.Data;

namespace FedLlm.Defaults;

/// <summary>The three FinGPT sentiment classes.</summary>
public enum SentimentLabel
{
    /// <summary>"negative"</summary>
    Negative,

    /// <summary>"neutral"</summary>
    Neutral,

    /// <summary>"positive"</summary>
    Positive,
}

/// <summary>One synthetic headline with the parts it was built from.</summary>
/// <param name="Text">The headline, e.g. "Apex Biotech shares jump after quarterly profit beat analyst estimates".</param>
/// <param name="Label">The sentiment, fixed by <paramref name="Move"/> and <paramref name="Event"/> (both carry it).</param>
/// <param name="Company">The company name.</param>
/// <param name="Move">The share-price phrase, e.g. "jump".</param>
/// <param name="Event">The news clause, e.g. "quarterly profit beat analyst estimates".</param>
/// <param name="Frame">Index of the sentence frame the parts were put into.</param>
public sealed record SentimentHeadline(string Text, SentimentLabel Label, string Company, string Move, string Event, int Frame)
{
    /// <summary>The row in the Alpaca schema, laid out as FinGPT/fingpt-sentiment-train.</summary>
    public AlpacaRecord ToAlpacaRecord() =>
        new(FinancialSentimentDataset.Instruction, Text, FinancialSentimentDataset.LabelText(Label));
}

/// <summary>Sizes and seed of the default data set.</summary>
public sealed record FinancialSentimentOptions
{
    /// <summary>Seed of the SplitMix64 stream; 2023 is OpenFedLLM's seed.</summary>
    public ulong Seed { get; init; } = 2023;

    /// <summary>Training examples per label; 667 x 3 = 2001 in all.</summary>
    public int TrainPerLabel { get; init; } = 667;

    /// <summary>Held-out examples per label; 100 x 3 = 300 in all.</summary>
    public int EvalPerLabel { get; init; } = 100;
}

/// <summary>Paths written by <see cref="FinancialSentimentDataset.Write"/>.</summary>
/// <param name="TrainPath">train.jsonl</param>
/// <param name="EvalPath">eval.jsonl</param>
public sealed record SentimentDataFiles(string TrainPath, string EvalPath);

/// <summary>
/// The embedded default data set: FinGPT-style financial news sentiment over synthetic one-sentence headlines, in the
/// Alpaca schema, small and regular enough for a tiny model to learn in minutes on two CPU cores.
/// </summary>
/// <remarks>
/// <para>A headline puts a company, a share-price move and a news event into one of three sentence frames. Move and event
/// are drawn from the same sentiment class, so each alone determines the label and no headline is ambiguous.</para>
/// <para><b>Held-out split.</b> Evaluation headlines use companies that never occur in training, and (move, event)
/// pairs that never occur in training: the pair (m, e) is held out when (m + e) mod 5 = 0, so every move and every event
/// still occurs in training with other partners. Exact match on the held-out split therefore measures whether the model
/// learnt that moves and events carry the sentiment, not whether it memorised headlines.</para>
/// <para>Generation is a pure function of <see cref="FinancialSentimentOptions"/>: same options, same bytes from
/// <see cref="Write"/>. Each split is balanced exactly (the same count per label) and shuffled.</para>
/// </remarks>
public sealed class FinancialSentimentDataset
{
    /// <summary>The FinGPT sentiment instruction (fingpt-sentiment-train's news wording).</summary>
    public const string Instruction = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.";

    /// <summary>File name of the training split.</summary>
    public const string TrainFileName = "train.jsonl";

    /// <summary>File name of the held-out split.</summary>
    public const string EvalFileName = "eval.jsonl";

    // The held-out rule: 1 in HoldOutModulus (move, event) pairs is evaluation-only.
    private const int HoldOutModulus = 5;

    /// <summary>Sentence frames: {0} company, {1} move, {2} event. All take a plural "shares" subject.</summary>
    internal static readonly string[] Frames =
    [
        "{0} shares {1} after {2}",
        "Shares of {0} {1} as {2}",
        "{0} shares {1} on news that {2}",
    ];

    /// <summary>Companies used in training (fictional).</summary>
    internal static readonly string[] TrainCompanies =
    [
        "Northwind Logistics", "Apex Biotech", "Bluewater Shipping", "Cedar Ridge Bank", "Summit Semiconductor",
        "Harbor Point Insurance", "Ironclad Steel", "Greenfield Foods", "Silverline Telecom", "Redwood Pharmaceuticals",
        "Granite Construction Group", "Lakeshore Retail", "Meridian Airlines", "Pinnacle Software", "Riverbend Utilities",
        "Starlight Media", "Westbrook Motors", "Evergreen Paper", "Falcon Aerospace", "Golden Gate Mining",
        "Horizon Health", "Keystone Chemicals", "Lumen Devices", "Maple Leaf Brewing", "Oakmont Realty",
        "Pacific Rim Textiles", "Quantum Robotics", "Sterling Financial", "Trident Oil", "Unity Payments",
        "Vertex Cloud", "Willow Creek Apparel", "Atlas Freight", "Beacon Hotels", "Cobalt Batteries",
        "Delta Agritech", "Eastgate Cinemas", "Frontier Rail", "Glacier Water", "Helix Genomics",
    ];

    /// <summary>Companies used only in the held-out split (fictional).</summary>
    internal static readonly string[] EvalCompanies =
    [
        "Kestrel Drones", "Larkspur Cosmetics", "Mosaic Fintech", "Nimbus Airways", "Orion Shipyards",
        "Prairie Grain", "Ridgeline Outdoor", "Solstice Solar", "Tidewater Seafood", "Zephyr Wind Power",
    ];

    /// <summary>Share-price moves per label, in <see cref="SentimentLabel"/> order.</summary>
    internal static readonly string[][] Moves =
    [
        [
            "plunge", "tumble", "slump", "sink", "fall sharply",
            "drop 12%", "slide to a two-year low", "crash", "hit a 52-week low", "lose a fifth of their value",
        ],
        [
            "are little changed", "trade flat", "hold steady", "end the day unchanged", "move sideways",
            "are flat in early trading", "show little reaction", "close near the previous day's level", "trade in a narrow range", "barely move",
        ],
        [
            "jump", "surge", "rally", "soar", "climb to a record high",
            "rise sharply", "gain 9%", "advance strongly", "rebound sharply", "hit a 52-week high",
        ],
    ];

    /// <summary>News events per label, in <see cref="SentimentLabel"/> order.</summary>
    internal static readonly string[][] Events =
    [
        [
            "quarterly profit missed analyst estimates", "the company cut its full-year revenue guidance",
            "regulators rejected its flagship product", "it lost a key government contract",
            "the company suspended its dividend", "the company reported a surprise annual loss",
            "analysts downgraded the stock to sell", "its planned merger collapsed",
            "the chief executive resigned amid an accounting probe", "first-quarter revenue fell 25% from a year earlier",
            "a major customer canceled its supply deal", "the company warned it may breach its loan covenants",
            "weak holiday demand hurt its sales outlook", "it lost a costly patent lawsuit",
            "net income halved in the latest quarter", "its credit rating was cut to junk",
            "orders fell to a ten-year low", "it recalled a million faulty products",
            "margins shrank more than expected", "it disclosed a large data breach",
        ],
        [
            "the company confirmed the date of its next earnings call", "it reaffirmed its full-year guidance",
            "the board kept the dividend unchanged", "it published its annual sustainability report",
            "the company completed a previously announced name change", "it moved its headquarters to another building in the same city",
            "the company scheduled its annual shareholder meeting for May", "quarterly results were in line with expectations",
            "it appointed a new company secretary", "analysts kept their hold rating on the stock",
            "the company renewed its credit facility on similar terms", "it said it would present at an industry conference next month",
            "the company filed its routine quarterly report", "its finance chief will retire at year end as planned",
            "management said the outlook was unchanged", "the company launched a redesigned corporate website",
            "it reshuffled its board committees", "the company declined to comment on market rumors",
            "its index weighting was left unchanged", "the company announced the time of its investor day",
        ],
        [
            "quarterly profit beat analyst estimates", "the company raised its full-year revenue guidance",
            "regulators approved its flagship product", "it won a $2 billion government contract",
            "the board announced a large share buyback", "the company reported record annual sales",
            "analysts upgraded the stock to buy", "it agreed to be acquired at a 40% premium",
            "the company raised its dividend by 15%", "first-quarter revenue grew 30% from a year earlier",
            "it signed a major supply deal with a global retailer", "the company swung to a profit ahead of schedule",
            "strong holiday demand lifted its sales outlook", "it won a long-running lawsuit",
            "net income doubled in the latest quarter", "its credit rating was upgraded",
            "orders rose to an all-time high", "it secured new funding from major investors",
            "margins improved more than expected", "its new product line became a best seller",
        ],
    ];

    private FinancialSentimentDataset(IReadOnlyList<SentimentHeadline> train, IReadOnlyList<SentimentHeadline> eval)
    {
        Train = train;
        Eval = eval;
    }

    /// <summary>The training split, shuffled.</summary>
    public IReadOnlyList<SentimentHeadline> Train { get; }

    /// <summary>The held-out split, shuffled; disjoint from training in companies and in (move, event) pairs.</summary>
    public IReadOnlyList<SentimentHeadline> Eval { get; }

    /// <summary>The answer text of a label ("negative", "neutral", "positive").</summary>
    public static string LabelText(SentimentLabel label) => label switch
    {
        SentimentLabel.Negative => "negative",
        SentimentLabel.Neutral => "neutral",
        SentimentLabel.Positive => "positive",
        _ => throw new ArgumentOutOfRangeException(nameof(label), label, null),
    };

    /// <summary>Whether the (move, event) pair is reserved for the held-out split.</summary>
    internal static bool IsHeldOutPair(int move, int @event) => (move + @event) % HoldOutModulus == 0;

    /// <summary>Generates the data set.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A split asks for more distinct headlines per label than its parts allow.</exception>
    public static FinancialSentimentDataset Generate(FinancialSentimentOptions? options = null)
    {
        options ??= new FinancialSentimentOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.TrainPerLabel);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.EvalPerLabel);

        var rng = new SplitMix64(options.Seed);
        var labels = Enum.GetValues<SentimentLabel>();
        var train = new List<SentimentHeadline>();
        var eval = new List<SentimentHeadline>();
        // Fixed draw order (all training labels, then all held-out labels) keeps the stream, and so the bytes, stable.
        foreach (var label in labels)
            train.AddRange(Draw(rng, label, heldOut: false, TrainCompanies, options.TrainPerLabel));
        foreach (var label in labels)
            eval.AddRange(Draw(rng, label, heldOut: true, EvalCompanies, options.EvalPerLabel));
        rng.Shuffle(train);
        rng.Shuffle(eval);
        return new FinancialSentimentDataset(train, eval);
    }

    /// <summary>Writes <see cref="TrainFileName"/> and <see cref="EvalFileName"/> (Alpaca schema, JSON Lines) into a directory.</summary>
    /// <param name="directory">Created if missing; existing files of the same names are overwritten.</param>
    /// <returns>The paths written.</returns>
    public SentimentDataFiles Write(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        var files = new SentimentDataFiles(Path.Combine(directory, TrainFileName), Path.Combine(directory, EvalFileName));
        AlpacaWriter.WriteJsonl(files.TrainPath, Train.Select(h => h.ToAlpacaRecord()));
        AlpacaWriter.WriteJsonl(files.EvalPath, Eval.Select(h => h.ToAlpacaRecord()));
        return files;
    }

    private static List<SentimentHeadline> Draw(SplitMix64 rng, SentimentLabel label, bool heldOut, string[] companies, int count)
    {
        var moves = Moves[(int)label];
        var events = Events[(int)label];
        var pairs = new List<(int Move, int Event)>();
        for (var m = 0; m < moves.Length; m++)
            for (var e = 0; e < events.Length; e++)
                if (IsHeldOutPair(m, e) == heldOut) pairs.Add((m, e));

        var poolSize = pairs.Count * Frames.Length * companies.Length;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, poolSize);
        // Rejection of repeats: counts are far below the pool size, so this takes few extra draws.
        var chosen = new HashSet<int>();
        var result = new List<SentimentHeadline>(count);
        while (result.Count < count)
        {
            var index = rng.NextInt(poolSize);
            if (!chosen.Add(index)) continue;
            var company = companies[index % companies.Length];
            var rest = index / companies.Length;
            var frame = rest % Frames.Length;
            var (m, e) = pairs[rest / Frames.Length];
            var text = string.Format(System.Globalization.CultureInfo.InvariantCulture, Frames[frame], company, moves[m], events[e]);
            result.Add(new SentimentHeadline(text, label, company, moves[m], events[e], frame));
        }

        return result;
    }
}
