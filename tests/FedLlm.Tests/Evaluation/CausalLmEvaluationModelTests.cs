using FedLlm.Evaluation;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tests.Data;
using static TorchSharp.torch;

namespace FedLlm.Tests.Evaluation;

public class CausalLmEvaluationModelTests
{
    static LlamaForCausalLM TinyModel() => LlamaForCausalLM.CreateRandom(TinyModels.Llama() with { VocabSize = 140 }, seed: 7, std: 0.3);

    /// <summary>
    /// The reference: one unpadded sequence at a time through the full forward pass, every position's log-softmax, the
    /// continuation's tokens summed. No batching, no padding, no position picking.
    /// </summary>
    static (double Sum, bool Greedy) PerToken(LlamaForCausalLM model, IReadOnlyList<int> ids, int continuationTokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.Forward(tensor(ids.Select(i => (long)i).ToArray(), new long[] { 1, ids.Count }));   // (1, T, V)
        var logProbs = nn.functional.log_softmax(logits[0], 1);                                             // (T, V)
        double sum = 0;
        bool greedy = true;
        for (int t = ids.Count - continuationTokens; t < ids.Count; t++)
        {
            sum += logProbs[t - 1, ids[t]].item<float>();
            greedy &= logProbs[t - 1].argmax().item<long>() == ids[t];
        }
        return (sum, greedy);
    }

    [Fact]
    public void Batched_padded_log_likelihoods_equal_a_per_token_computation()
    {
        using var model = TinyModel();
        var tokenizer = new CharTokenizer();
        var evaluation = new CausalLmEvaluationModel(model, tokenizer, batchSize: 2);
        LogLikelihoodRequest[] requests =
        [
            new("the cat sat on the", " mat"),
            new("a", " b"),
            new("question: what is it? answer: ", "yes it is"), // trailing space moves to the continuation
        ];
        var results = evaluation.LogLikelihoods(requests);
        string[] continuations = [" mat", " b", " yes it is"];
        for (int i = 0; i < requests.Length; i++)
        {
            string context = requests[i].Context.TrimEnd();
            var ids = new List<int> { CharTokenizer.Bos };
            ids.AddRange(tokenizer.Encode(context + continuations[i]));
            var (sum, greedy) = PerToken(model, ids, continuations[i].Length);
            Assert.Equal(sum, results[i].LogProbability, 4);
            Assert.Equal(greedy, results[i].IsGreedy);
            Assert.Equal(continuations[i].Length, results[i].ContinuationTokens);
        }
    }

    [Fact]
    public void Greedy_flag_is_true_exactly_for_the_greedy_continuation()
    {
        using var model = TinyModel();
        var tokenizer = new CharTokenizer();
        var greedyIds = new TextGenerator(model, tokenizer).GenerateIds([[CharTokenizer.Bos, .. tokenizer.Encode("hello").Select(i => (long)i)]],
            new GenerationOptions { MaxNewTokens = 3 })[0];
        // With this seed the greedy ids are plain characters (no special ids), so they round-trip through text.
        Assert.True(greedyIds.Count == 3 && greedyIds.All(i => i >= 10), "fixture: the seed's greedy continuation must be spellable");
        string greedy = tokenizer.Decode(greedyIds.Select(i => (int)i));
        string other = greedy[..2] + (char)(greedy[2] == 'q' ? 'r' : 'q');
        var results = new CausalLmEvaluationModel(model, tokenizer).LogLikelihoods([new("hello", greedy), new("hello", other)]);
        Assert.True(results[0].IsGreedy);
        Assert.False(results[1].IsGreedy);
        Assert.True(results[0].LogProbability > results[1].LogProbability);
    }

    [Fact]
    public void Long_requests_are_left_truncated_to_the_max_length()
    {
        using var model = TinyModel();
        var tokenizer = new CharTokenizer();
        const int maxLength = 12;
        var request = new LogLikelihoodRequest("a long context that will not fit", " end");
        var result = new CausalLmEvaluationModel(model, tokenizer, maxLength: maxLength).LogLikelihoods([request])[0];
        var whole = new List<int> { CharTokenizer.Bos };
        whole.AddRange(tokenizer.Encode(request.Context + request.Continuation));
        var window = whole.Skip(whole.Count - (maxLength + 1)).ToList(); // the last max+1 tokens; the last is only a target
        Assert.Equal(PerToken(model, window, 4).Sum, result.LogProbability, 4);
    }

    [Fact]
    public void Generation_matches_the_text_generator_and_cuts_at_stop_strings()
    {
        using var model = TinyModel();
        var tokenizer = new CharTokenizer();
        var options = new GenerationOptions { MaxNewTokens = 6 };
        string[] prompts = ["abc", "a much longer prompt"];
        var expected = new TextGenerator(model, tokenizer).Generate(prompts, options);
        var actual = new CausalLmEvaluationModel(model, tokenizer, batchSize: 2).Generate(prompts, options);
        Assert.Equal(expected, actual);
        Assert.True(expected[1].Length >= 2, "fixture: the seed's answer must be long enough to hold a stop string");
        string stop = expected[1][1..2];
        var cut = new CausalLmEvaluationModel(model, tokenizer).Generate(prompts, options with { StopStrings = [stop] });
        Assert.Equal(expected[1][..expected[1].IndexOf(stop, StringComparison.Ordinal)], cut[1]);
    }
}
