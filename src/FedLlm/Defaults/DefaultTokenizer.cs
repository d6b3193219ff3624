using FedLlm.Data;

namespace FedLlm.Defaults;

/// <summary>The tokenizer of the embedded default model: byte-level BPE learnt from the default data set's training split.</summary>
/// <remarks>
/// A 512-id vocabulary keeps the default model's embedding and output layers small enough to train on two CPU cores,
/// while whole words of the task ("Ġshares", "Ġpositive", the template's "###") become single tokens.
/// </remarks>
public static class DefaultTokenizer
{
    /// <summary>Vocabulary size: 256 bytes, 253 merges, 3 special tokens.</summary>
    public const int VocabSize = 512;

    /// <summary>The training texts: each training example rendered through the Alpaca template, without EOS text.</summary>
    /// <remarks>The same text the model is fine-tuned on, so the merges fit it; held-out headlines are excluded so that
    /// their unseen company names are tokenized as a real new input would be.</remarks>
    public static IEnumerable<string> Corpus(FinancialSentimentDataset dataset)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        foreach (var headline in dataset.Train)
        {
            var example = headline.ToAlpacaRecord().ToInstructionExample();
            yield return PromptTemplate.Alpaca.Format(example.Instruction, example.Response, eos: "");
        }
    }

    /// <summary>Trains the default tokenizer on <paramref name="dataset"/>.</summary>
    public static ByteLevelBpeTokenizer Train(FinancialSentimentDataset dataset) =>
        new ByteLevelBpeTrainer(VocabSize).Train(Corpus(dataset));
}
