namespace FedLlm.Evaluation.Data;

/// <summary>
/// Hugging Face datasets' <c>Dataset.train_test_split(test_size, seed=seed)</c>: shuffle with
/// <c>np.random.default_rng(seed).permutation(n)</c>; the test split is the first ⌈test_size·n⌉ indices of the
/// permutation, in permutation order. FinGPT's benchmarks take their test sets this way (FPB: default 0.25, seed 42;
/// FiQA-SA: 0.226, seed 42).
/// </summary>
public static class HfTrainTestSplit
{
    /// <summary>The test indices of <paramref name="count"/> rows for
    /// <c>train_test_split(test_size=<paramref name="testSize"/>, seed=<paramref name="seed"/>)</c>, in permutation
    /// order.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="testSize"/> is not in (0, 1).</exception>
    public static IReadOnlyList<int> TestIndices(int count, double testSize, ulong seed)
    {
        if (testSize is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(testSize), testSize, "must be in (0, 1)");
        int testCount = (int)Math.Ceiling(testSize * count);
        return new NumpyRandom(seed).Permutation(count)[..testCount];
    }
}
