namespace FedLlm.Evaluation.Tasks;

/// <summary>Which judged benchmark: they differ only in how many turns their questions have and what is reported.</summary>
public enum JudgedBenchmark
{
    /// <summary>MT-Bench (Zheng et al. 2023): 80 two-turn questions in 8 categories; reports MT-1, MT-2 and MT-Avg.</summary>
    MtBench,

    /// <summary>Vicuna-Bench: 80 single-turn questions in 9 categories; reports the mean rating.</summary>
    VicunaBench,
}
