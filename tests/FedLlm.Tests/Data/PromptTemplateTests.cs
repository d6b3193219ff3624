using Xunit;
using FedLlm.Data;

namespace FedLlm.Tests.Data;

public sealed class PromptTemplateTests
{
    [Fact]
    public void Alpaca_matches_openfedllm_exactly()
    {
        // utils/template.py: alpaca_template.format(instruction, response, eos)
        const string expected =
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
            "### Instruction:\nName a color. \n\n### Response: Blue</s>";

        Assert.Equal(expected, PromptTemplate.Alpaca.Format("Name a color.", "Blue", "</s>"));
        Assert.Equal("\n### Response:", PromptTemplate.Alpaca.ResponseTemplate);
    }

    [Fact]
    public void Vicuna_matches_openfedllm_exactly()
    {
        const string expected =
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, " +
            "detailed, and polite answers to the user's questions. USER: Name a color. ASSISTANT: Blue</s>";

        Assert.Equal(expected, PromptTemplate.Vicuna.Format("Name a color.", "Blue", "</s>"));
        Assert.Equal(" ASSISTANT:", PromptTemplate.Vicuna.ResponseTemplate);
    }

    [Theory]
    [InlineData("alpaca")]
    [InlineData("vicuna")]
    public void Prompt_ends_with_the_response_template_and_equals_openfedllm_generation_prompt(string name)
    {
        var template = PromptTemplate.FromName(name);
        var prompt = template.FormatPrompt("Q");

        Assert.EndsWith(template.ResponseTemplate, prompt);
        // evaluation/gen_model_answer.py: template.format(q, "", "")[:-1]
        var full = template.Format("Q", "", "");
        Assert.Equal(full[..^1], prompt);
        Assert.Equal(full, prompt + template.FormatCompletion(""));
    }

    [Fact]
    public void FromName_is_case_insensitive_and_lists_known_names_when_unknown()
    {
        Assert.Same(PromptTemplate.Alpaca, PromptTemplate.FromName("ALPACA"));

        var e = Assert.Throws<ArgumentException>(() => PromptTemplate.FromName("vicuna_v1.1"));
        Assert.Contains("alpaca, vicuna", e.Message);
    }

    [Fact]
    public void A_template_whose_prompt_does_not_end_with_its_marker_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => new PromptTemplate("x", "H: ", " ### Answer: ", "### Answer:", " "));
    }
}
