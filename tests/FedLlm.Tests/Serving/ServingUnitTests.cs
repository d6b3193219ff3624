using FedLlm.Data;
using FedLlm.Data.Templates;
using FedLlm.Defaults;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Serving;
using FedLlm.Tests.Export;
using FedLlm.Tokenization;
using static TorchSharp.torch;

namespace FedLlm.Tests.Serving;

public sealed class StopStringTextTests
{
    [Theory]
    [InlineData("hello wor", new[] { "world" }, 6)]        // "wor" may become "world": held back
    [InlineData("hello w", new[] { "xyz", "wo" }, 6)]     // "w" may become "wo"
    [InlineData("hello", new[] { "world" }, 5)]           // nothing at the end starts a stop string
    [InlineData("caf\uFFFD", new string[0], 3)]           // an unfinished UTF-8 character waits for its last byte
    [InlineData("ab\n\n", new[] { "\n\n\n" }, 2)]         // two of three newlines held
    public void SafeLength_holds_back_what_could_still_become_a_stop_string(string text, string[] stops, int expected) =>
        Assert.Equal(expected, StopStringText.SafeLength(text, stops));

    [Fact]
    public void FirstStop_is_the_earliest_of_all_stop_strings() =>
        Assert.Equal(2, StopStringText.FirstStop("a b c d", ["c", "b", "zz"]));
}

public sealed class ChatPromptTests
{
    [Fact]
    public void Alpaca_renders_earlier_turns_as_training_examples_and_the_system_text_into_the_first_instruction()
    {
        var tokenizer = TokenizerLoader.Load(EmbeddedDefault.Ensure().ModelDirectory);
        var chat = new ChatPrompt(tokenizer, "alpaca");
        var alpaca = PromptTemplate.Alpaca;
        string text = chat.Render([
            new(ChatMessage.System, "Be brief."), new(ChatMessage.User, "Q1"), new(ChatMessage.Assistant, "A1"), new(ChatMessage.User, "Q2")]);
        var (p1, c1) = alpaca.Format("Be brief.\n\nQ1", "A1");
        Assert.Equal(p1 + c1 + alpaca.FormatPrompt("Q2"), text);
        Assert.Throws<ChatFormatException>(() => chat.Render([new(ChatMessage.User, "Q"), new(ChatMessage.Assistant, "A")]));
        Assert.Throws<ChatFormatException>(() => chat.Render([new("tool", "Q")]));
    }
}

public sealed class AdapterBankTests
{
    [Fact]
    public void A_mixed_batch_gives_each_row_the_logits_of_its_own_adapter_model()
    {
        string root = Path.Combine(Path.GetTempPath(), "fedllm-bank-" + Guid.NewGuid().ToString("N"));
        try
        {
            string modelDir = EmbeddedDefault.Ensure().ModelDirectory;
            string a = ExportFixtures.RandomAdapter(modelDir, Path.Combine(root, "a"), seed: 1, bStd: 0.2);
            string b = ExportFixtures.RandomAdapter(modelDir, Path.Combine(root, "b"), seed: 2, bStd: 0.2);
            using var ids = tensor(new long[] { 5, 9, 12, 7, 3, 5, 9, 12, 7, 3, 5, 9, 12, 7, 3 }, new long[] { 3, 5 });

            Tensor Logits(string? adapter, int row)
            {
                using var model = ModelLoader.Load(modelDir);
                if (adapter is not null) AdapterIO.Load(adapter, model);
                using var _ = no_grad();
                using var one = ids.narrow(0, row, 1);
                return model.Forward(one);
            }

            using var bankModel = ModelLoader.Load(modelDir);
            using var bank = new AdapterBank(bankModel);
            bank.Add("a", a);
            bank.Add("b", b);
            bank.Routing.Route([bank.Slot("b")!.Value, AdapterBank.BaseSlot, bank.Slot("a")!.Value]);
            using var noGrad = no_grad();
            using var mixed = bankModel.Forward(ids);                                 // (3, 5, V)
            bank.Routing.Clear();

            using var expectB = Logits(b, 0);
            using var expectBase = Logits(null, 1);
            using var expectA = Logits(a, 2);
            Assert.True(mixed.narrow(0, 0, 1).allclose(expectB, rtol: 1e-5, atol: 1e-5));
            Assert.True(mixed.narrow(0, 1, 1).allclose(expectBase, rtol: 1e-5, atol: 1e-5));
            Assert.True(mixed.narrow(0, 2, 1).allclose(expectA, rtol: 1e-5, atol: 1e-5));
            Assert.False(expectA.allclose(expectB, rtol: 1e-3, atol: 1e-3)); // the adapters differ, so a swapped route would fail
            Assert.False(expectA.allclose(expectBase, rtol: 1e-3, atol: 1e-3));
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void An_adapter_for_another_model_is_refused_naming_the_file()
    {
        string root = Path.Combine(Path.GetTempPath(), "fedllm-bank-" + Guid.NewGuid().ToString("N"));
        try
        {
            string llama3 = ExportFixtures.Llama3Model(Path.Combine(root, "llama3"));
            string foreign = ExportFixtures.RandomAdapter(llama3, Path.Combine(root, "foreign"));
            using var model = ModelLoader.Load(EmbeddedDefault.Ensure().ModelDirectory);
            using var bank = new AdapterBank(model);
            var error = Assert.Throws<AdapterException>(() => bank.Add("foreign", foreign));
            Assert.Contains("adapter_model.safetensors", error.Message);
            Assert.Empty(bank.Names);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }
}
