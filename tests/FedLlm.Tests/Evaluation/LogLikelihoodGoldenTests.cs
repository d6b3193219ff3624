using FedLlm.Checkpoints;
using FedLlm.Evaluation;
using FedLlm.Modeling;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Evaluation;

/// <summary>
/// Log-likelihoods against plain PyTorch: the golden checkpoints' reference logits (tests/reference/make_golden.py,
/// computed in float64 by an independent Llama implementation) give Σ log p(continuation | context) directly.
/// </summary>
public class LogLikelihoodGoldenTests
{
    /// <summary>Token ids as text: id i is the character U+0100 + i, no BOS, so a request's ids are exactly the golden's.</summary>
    sealed class IdTokenizer(int vocab) : ITextTokenizer
    {
        const int Offset = 0x100;
        public int VocabSize => vocab;
        public int? BosTokenId => null;
        public int? EosTokenId => 2;
        public int? PadTokenId => 0;
        public string? ChatTemplate => null;
        public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false) => text.Select(c => c - Offset).ToList();
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => string.Concat(ids.Select(i => (char)(Offset + i)));
        public int? TokenToId(string token) => null;
        public static string Text(IEnumerable<long> ids) => string.Concat(ids.Select(i => (char)(Offset + i)));
    }

    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("smollm_tied")]
    public void Batched_log_likelihoods_match_the_pytorch_reference_logits(string name)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", name);
        using var model = ModelLoader.Load(dir);
        using var golden = SafeTensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        using var ids = golden.Read("input_ids");
        using var mask = golden.Read("attention_mask");
        using var logits = golden.Read("logits");
        using var logProbs = nn.functional.log_softmax(logits.to(ScalarType.Float64), 2);     // (B, T, V)
        var tokens = ids.data<long>().ToArray();
        long T = ids.shape[1];
        var requests = new List<LogLikelihoodRequest>();
        var expected = new List<(double Sum, bool Greedy)>();
        for (int b = 0; b < ids.shape[0]; b++)
        {
            int length = (int)mask[b].sum().item<long>();
            var row = tokens.Skip((int)(b * T)).Take(length).ToArray();
            int split = length / 2; // context = first half, continuation = the rest (different lengths per row → padding)
            requests.Add(new LogLikelihoodRequest(IdTokenizer.Text(row[..split]), IdTokenizer.Text(row[split..])));
            double sum = 0;
            bool greedy = true;
            for (int t = split; t < length; t++)
            {
                sum += logProbs[b, t - 1, row[t]].item<double>();
                greedy &= logProbs[b, t - 1].argmax().item<long>() == row[t];
            }
            expected.Add((sum, greedy));
        }
        var actual = new CausalLmEvaluationModel(model, new IdTokenizer(model.Config.VocabSize), batchSize: 4).LogLikelihoods(requests);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(expected[i].Sum, actual[i].LogProbability, 3);
            Assert.Equal(expected[i].Greedy, actual[i].IsGreedy);
        }
    }
}
