using FedLlm.Modeling;

namespace FedLlm.Tests;

/// <summary>Small configurations that still exercise every path (GQA, bias, tied head).</summary>
internal static class TinyModels
{
    public static LlamaConfig Llama(bool tied = false, int kvHeads = 2, ModelFamily family = ModelFamily.Llama, int? slidingWindow = null) => new()
    {
        Family = family,
        VocabSize = 97,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = kvHeads,
        HeadDim = 8,
        RmsNormEps = 1e-6,
        RopeTheta = 10000,
        TieWordEmbeddings = tied,
        QkvBias = family == ModelFamily.Qwen2,
        SlidingWindow = slidingWindow,
        MaxPositionEmbeddings = 128,
    };
}
