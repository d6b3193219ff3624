using Xunit;
using FedLlm.Data;
using FedLlm.Defaults;

namespace FedLlm.Tests.Data;

public sealed class SftExampleBuilderTests
{
    private const int Ignore = SftExampleBuilder.IgnoreIndex;
    private static readonly PromptTemplate Alpaca = PromptTemplate.Alpaca;

    [Fact]
    public void Labels_mask_exactly_the_prompt_and_keep_response_and_eos()
    {
        var tokenizer = new CharTokenizer();
        var builder = new SftExampleBuilder(tokenizer, Alpaca);
        var example = new InstructionExample("Classify: good news", "positive");

        var built = builder.Build(example);

        var prompt = Alpaca.FormatPrompt(example.Instruction);
        var completion = Alpaca.FormatCompletion(example.Response);
        Assert.Equal(1 + prompt.Length, built.PromptLength); // BOS + one id per char
        Assert.Equal(CharTokenizer.Bos, built.InputIds[0]);
        Assert.Equal(CharTokenizer.Eos, built.InputIds[^1]);
        Assert.Equal(prompt + completion, tokenizer.Decode(built.InputIds));
        Assert.All(built.Labels[..built.PromptLength], l => Assert.Equal(Ignore, l));
        Assert.Equal(built.InputIds[built.PromptLength..], built.Labels[built.PromptLength..]);
        Assert.Equal(" positive", tokenizer.Decode(built.Labels[built.PromptLength..]));
        // The last masked token is the end of the response template, as OpenFedLLM masks "up to and including" it.
        Assert.Equal(':', (char)(built.InputIds[built.PromptLength - 1] - 10));
        Assert.True(built.BoundaryAligned);
        Assert.False(built.Truncated);
    }

    [Fact]
    public void Eos_added_by_the_tokenizer_is_not_doubled()
    {
        var built = new SftExampleBuilder(new CharTokenizer(appendEos: true), Alpaca).Build(new("Q", "A"));

        Assert.Equal(1, built.InputIds.Count(id => id == CharTokenizer.Eos));
        Assert.Equal(CharTokenizer.Eos, built.InputIds[^1]);
        Assert.Equal(1 + Alpaca.FormatPrompt("Q").Length, built.PromptLength);
    }

    [Fact]
    public void Vicuna_masks_through_ASSISTANT_colon()
    {
        var tokenizer = new CharTokenizer();
        var built = new SftExampleBuilder(tokenizer, PromptTemplate.Vicuna).Build(new("Hi", "Hello"));

        Assert.EndsWith(" ASSISTANT:", tokenizer.Decode(built.InputIds[..built.PromptLength]));
        Assert.Equal(" Hello", tokenizer.Decode(built.Labels[built.PromptLength..]));
    }

    [Fact]
    public void Truncation_cuts_the_middle_of_the_instruction_and_keeps_response_header_and_marker()
    {
        var tokenizer = new CharTokenizer();
        var instruction = "START" + new string('x', 400) + "END";
        var skeleton = 1 + Alpaca.Header.Length + Alpaca.AfterInstruction.Length;
        var response = " positive".Length + 1; // separator + text + EOS
        var max = skeleton + 10 + response;    // room for 10 instruction chars
        var builder = new SftExampleBuilder(tokenizer, Alpaca, max);

        var built = builder.Build(new(instruction, "positive"));

        Assert.True(built.Truncated);
        Assert.Equal(max, built.Length);
        var expectedPrompt = Alpaca.FormatPrompt("START" + "xxEND"); // 5 from the front, 5 from the back
        Assert.Equal(expectedPrompt, tokenizer.Decode(built.InputIds[..built.PromptLength]));
        Assert.Equal(" positive", tokenizer.Decode(built.Labels[built.PromptLength..]));
        Assert.Equal(CharTokenizer.Eos, built.InputIds[^1]);
    }

    [Fact]
    public void Response_end_is_cut_only_when_the_response_alone_does_not_fit()
    {
        var tokenizer = new CharTokenizer();
        var skeleton = 1 + Alpaca.Header.Length + Alpaca.AfterInstruction.Length;
        var builder = new SftExampleBuilder(tokenizer, Alpaca, skeleton + 6);

        var built = builder.Build(new("some instruction", "abcdefghij"));

        Assert.Equal(skeleton + 6, built.Length);
        Assert.Equal(Alpaca.FormatPrompt(""), tokenizer.Decode(built.InputIds[..built.PromptLength]));
        Assert.Equal(" abcde", tokenizer.Decode(built.Labels[built.PromptLength..]));
        Assert.DoesNotContain(CharTokenizer.Eos, built.InputIds); // a cut response must not teach stopping there
    }

    [Fact]
    public void Example_that_fits_is_not_truncated_at_the_exact_limit()
    {
        var tokenizer = new CharTokenizer();
        var length = 1 + Alpaca.FormatPrompt("abc").Length + " xy".Length + 1;

        var built = new SftExampleBuilder(tokenizer, Alpaca, length).Build(new("abc", "xy"));

        Assert.False(built.Truncated);
        Assert.Equal(length, built.Length);
    }

    [Fact]
    public void Limit_below_the_template_skeleton_is_an_error_not_a_silent_empty_example()
    {
        var builder = new SftExampleBuilder(new CharTokenizer(), Alpaca, 20);

        Assert.Throws<InvalidOperationException>(() => builder.Build(new("q", "a")));
    }

    [Fact]
    public void Tokenizer_without_eos_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => new SftExampleBuilder(new CharTokenizer(hasEos: false), Alpaca));
    }

    [Fact]
    public void Token_spanning_the_boundary_is_masked_and_reported()
    {
        // ": " merges into one token in the full text, but the prompt alone ends with a plain ':'.
        var tokenizer = new CharTokenizer(mergeColonSpace: true);

        var built = new SftExampleBuilder(tokenizer, Alpaca).Build(new("Q", "yes"));

        Assert.False(built.BoundaryAligned);
        Assert.Equal(CharTokenizer.ColonSpace, built.InputIds[built.PromptLength - 1]);
        Assert.Equal("yes", tokenizer.Decode(built.Labels[built.PromptLength..]));
    }

    [Fact]
    public void Byte_level_bpe_puts_the_boundary_between_tokens_for_every_default_example()
    {
        var data = FinancialSentimentDataset.Generate();
        var tokenizer = DefaultTokenizer.Train(data);
        var builder = new SftExampleBuilder(tokenizer, Alpaca);

        foreach (var headline in data.Eval)
        {
            var built = builder.Build(headline.ToAlpacaRecord().ToInstructionExample());

            Assert.True(built.BoundaryAligned);
            var labelled = built.Labels[built.PromptLength..];
            Assert.Equal(" " + FinancialSentimentDataset.LabelText(headline.Label), tokenizer.Decode(labelled));
            Assert.Equal(tokenizer.EosTokenId, labelled[^1]);
            // Training prompt ids are exactly what generation will encode.
            Assert.Equal(tokenizer.Encode(Alpaca.FormatPrompt(headline.ToAlpacaRecord().ToInstructionExample().Instruction), true),
                built.InputIds[..built.PromptLength]);
        }
    }
}
