using FedLlm.Alignment;

namespace FedLlm.Tests.Alignment;

/// <summary>
/// Random prompts whose chosen response is drawn from ids 4..39 and rejected one from 56..91 (tiny vocabulary of
/// TinyModels). The preference is a property of the tokens, not of particular sequences, so DPO can generalise it to
/// pairs it never trained on.
/// </summary>
internal static class TokenPreferencePairs
{
    public static List<PreferencePair> Create(int count, int seed)
    {
        var rng = new Random(seed);
        int[] Draw(int n, int low) => Enumerable.Range(0, n).Select(_ => rng.Next(low, low + 36)).ToArray();
        return Enumerable.Range(0, count).Select(_ =>
        {
            var prompt = new[] { 1 }.Concat(Enumerable.Range(0, rng.Next(2, 6)).Select(_ => rng.Next(4, 97))).ToArray();
            int length = rng.Next(2, 5);
            return new PreferencePair(prompt, [.. Draw(length, 4), 2], [.. Draw(length, 56), 2]);
        }).ToList();
    }
}
