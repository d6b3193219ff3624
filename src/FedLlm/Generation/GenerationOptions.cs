namespace FedLlm.Generation;

/// <summary>Decoding settings; the defaults give greedy decoding, as transformers' generate does without do_sample.</summary>
public sealed record GenerationOptions
{
    /// <summary>The most tokens to generate (stop strings and EOS may end it sooner).</summary>
    public int MaxNewTokens { get; init; } = 128;

    /// <summary>0 = greedy (argmax); otherwise logits are divided by it before sampling.</summary>
    public double Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens before sampling; 0 = off.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Generation of a sequence stops when its decoded continuation contains one of these (which is cut off).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = Array.Empty<string>();

    /// <summary>Seed of the sampling generator, so that sampled outputs repeat.</summary>
    public long Seed { get; init; } = 0;

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range (names it).</exception>
    public void Validate()
    {
        if (MaxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must be positive");
        if (Temperature < 0) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be ≥ 0");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "must be ≥ 0");
        if (TopP is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
    }
}
