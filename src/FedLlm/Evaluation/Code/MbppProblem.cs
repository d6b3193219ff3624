namespace FedLlm.Evaluation.Code;

/// <summary>
/// One MBPP problem (google-research/mbpp): a one-sentence task, a reference solution and three assert tests.
/// </summary>
/// <remarks>
/// Reads both published layouts: the full set (<c>text</c>, <c>test_setup_code</c>, <c>challenge_test_list</c>) and the
/// sanitized set (<c>prompt</c> instead of <c>text</c>, and <c>test_imports</c>).
/// </remarks>
public sealed partial record MbppProblem(
    string TaskId, string Text, string Code, IReadOnlyList<string> TestList, string TestSetupCode, IReadOnlyList<string> ChallengeTestList)
{
    /// <exception cref="FedLlm.Data.DataFormatException">A record is malformed; the message names file, line and field.</exception>
    public static IReadOnlyList<MbppProblem> ReadJsonl(string path) => EvaluationJsonl.Read(path, r =>
    {
        var text = r.OptionalString("text") ?? r.OptionalString("prompt") ?? throw r.Error("text", "missing (nor is the sanitized layout's 'prompt' there)");
        var tests = r.StringList("test_list");
        if (tests.Count == 0) throw r.Error("test_list", "empty: a problem needs at least one test");
        var setup = r.OptionalString("test_setup_code") ?? "";
        if (r.OptionalStringList("test_imports") is { Count: > 0 } imports) setup = string.Join("\n", imports) + (setup.Length > 0 ? "\n" + setup : "");
        return new MbppProblem(r.Id("task_id"), text, r.OptionalString("code") ?? "", tests, setup, r.OptionalStringList("challenge_test_list") ?? []);
    });

    /// <summary>
    /// The prompt of lm-evaluation-harness's <c>mbpp</c> task (after the MBPP paper, Austin et al. 2021): the task, its
    /// tests, then <c>[BEGIN]</c> after which the model writes the code and <c>[DONE]</c>.
    /// </summary>
    public string Prompt() =>
        $"You are an expert Python programmer, and here is your task: {Text} Your code should pass these tests:\n\n{string.Join("\n", TestList)}\n[BEGIN]\n";

    /// <summary>This problem as a few-shot example: its prompt, reference code and the <c>[DONE]</c> marker.</summary>
    public string FewShotExample() => Prompt() + Code + "\n[DONE]";

    /// <summary>The program run: setup code, the candidate code, then every assert (the challenge tests too if asked).</summary>
    public string Program(string code, bool includeChallengeTests = false)
    {
        var tests = includeChallengeTests ? TestList.Concat(ChallengeTestList) : TestList;
        return (TestSetupCode.Length > 0 ? TestSetupCode + "\n" : "") + code + "\n" + string.Join("\n", tests) + "\n";
    }

    /// <summary>
    /// The code inside a generation, as lm-evaluation-harness's <c>extract_code_blocks</c> finds it: the first fenced
    /// block if there is one, else the whole text (already cut at <c>[DONE]</c>).
    /// </summary>
    public static string ExtractCode(string generation)
    {
        ArgumentNullException.ThrowIfNull(generation);
        var match = FencedBlock().Match(generation);
        return match.Success ? match.Groups[1].Value : generation;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"```(?:\w+)?\n?(.*?)\n?```", System.Text.RegularExpressions.RegexOptions.Singleline)]
    private static partial System.Text.RegularExpressions.Regex FencedBlock();
}
