using FedLlm.Data.Templates;
using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Peft;
using FedLlm.Serving;
using FedLlm.Serving.Http;
using FedLlm.Tests.Export;
using FedLlm.Tokenization;

namespace FedLlm.Tests.Serving;

/// <summary>
/// A tiny Llama 3 (real Llama 3 tokenizer and chat template) with two adapters whose B matrices are drawn large enough
/// that each changes the greedy continuation, written once for the serving tests.
/// </summary>
public sealed class ServingFixture : IDisposable
{
    public ServingFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "fedllm-serving-" + Guid.NewGuid().ToString("N"));
        ModelDirectory = ExportFixtures.Llama3Model(Path.Combine(Root, "tiny-llama3"));
        Adapters = new Dictionary<string, string>
        {
            ["alpha"] = ExportFixtures.RandomAdapter(ModelDirectory, Path.Combine(Root, "alpha"), seed: 11, bStd: 0.3),
            ["beta"] = ExportFixtures.RandomAdapter(ModelDirectory, Path.Combine(Root, "beta"), seed: 12, bStd: 0.3),
        };
        Tokenizer = TokenizerLoader.Load(ModelDirectory);
    }

    public string Root { get; }
    public string ModelDirectory { get; }
    public IReadOnlyDictionary<string, string> Adapters { get; }
    public ITextTokenizer Tokenizer { get; }

    /// <summary>FedLlm's own greedy generation (TextGenerator) for a chat with the named adapter (null: the base).</summary>
    public string ReferenceChat(string? adapter, string user, int maxTokens, IReadOnlyList<string>? stops = null)
    {
        using var model = ModelLoader.Load(ModelDirectory);
        if (adapter is not null) AdapterIO.Load(Adapters[adapter], model);
        var prompt = new ChatPrompt(Tokenizer, TemplateCatalog.Model).Encode([new ChatMessage(ChatMessage.User, user)]);
        var generator = new TextGenerator(model, Tokenizer);
        var ids = generator.GenerateIds([prompt], new GenerationOptions { MaxNewTokens = maxTokens, StopStrings = stops ?? [] })[0];
        string text = Tokenizer.Decode(ids.Select(i => (int)i));
        int cut = StopStringText.FirstStop(text, stops ?? []);
        return cut >= 0 ? text[..cut] : text;
    }

    /// <summary>A running server over the fixture's model and both adapters; <paramref name="wrap"/> may decorate the decoder.</summary>
    public async Task<RunningServer> StartAsync(EngineOptions? engineOptions = null, ApiKeys? keys = null, Func<IBatchDecoder, IBatchDecoder>? wrap = null)
    {
        var model = ModelLoader.Load(ModelDirectory);
        var bank = new AdapterBank(model);
        foreach (var (name, folder) in Adapters) bank.Add(name, folder);
        var served = new ServedModel("tiny-llama3", bank, Tokenizer, new ChatPrompt(Tokenizer, ChatPrompt.DefaultTemplate(Tokenizer)));
        IBatchDecoder decoder = new BatchDecoder(bank, Tokenizer);
        if (wrap is not null) decoder = wrap(decoder);
        var engine = new InferenceEngine(decoder, engineOptions ?? new EngineOptions { BatchWindow = TimeSpan.FromMilliseconds(50) });
        var server = await OpenAiServer.StartAsync(served, engine, new OpenAiServerOptions { Port = 0, ApiKeys = keys ?? ApiKeys.None });
        return new RunningServer(server, engine, bank, model);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

public sealed class RunningServer(OpenAiServer server, InferenceEngine engine, AdapterBank bank, LlamaForCausalLM model) : IAsyncDisposable
{
    public OpenAiServer Server => server;
    public InferenceEngine Engine => engine;
    public Uri V1 => new(server.BaseAddress, "v1");

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        engine.Dispose();
        bank.Dispose();
        model.Dispose();
    }
}

/// <summary>Records which adapters each decoded batch held.</summary>
public sealed class RecordingDecoder(IBatchDecoder inner) : IBatchDecoder
{
    public List<int[]> Batches { get; } = new();

    public void Decode(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken = default)
    {
        lock (Batches) Batches.Add(batch.Select(e => e.Request.AdapterSlot).ToArray());
        inner.Decode(batch, cancellationToken);
    }
}

/// <summary>Holds every batch until <see cref="Release"/>, so a test can fill the queue behind a running batch.</summary>
public sealed class GatedDecoder(IBatchDecoder inner) : IBatchDecoder
{
    private readonly ManualResetEventSlim gate = new(false);

    public void Release() => gate.Set();

    public void Decode(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken = default)
    {
        gate.Wait(cancellationToken);
        inner.Decode(batch, cancellationToken);
    }
}
