using FedLlm.Generation;
using FedLlm.Modeling;
using FedLlm.Tokenization;

namespace FedLlm.Serving;

/// <summary>
/// Everything a server decodes with, built once: the base model, its adapter bank, the chat prompt, the batch decoder
/// and the engine's worker. <c>fedllm serve</c>, <c>fedllm chat</c> in-process and the serve benchmark share it.
/// </summary>
public sealed class ServingSession : IDisposable
{
    private readonly LlamaForCausalLM model;

    /// <param name="model">The base model; the session owns it from now on.</param>
    /// <param name="baseName">The model name of the base itself.</param>
    /// <param name="adapters">Adapter names and PEFT folders.</param>
    /// <param name="template">"model", a named template, or null for the model's chat template if it has one, else alpaca.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="engine">Batch size, queue length and batching window of the inference engine.</param>
    public ServingSession(LlamaForCausalLM model, ITextTokenizer tokenizer, string baseName,
        IEnumerable<(string Name, string Directory)> adapters, string? template, EngineOptions engine)
    {
        this.model = model;
        var bank = new AdapterBank(model);
        try
        {
            foreach (var (name, directory) in adapters) bank.Add(name, directory);
            Served = new ServedModel(baseName, bank, tokenizer, new ChatPrompt(tokenizer, template ?? ChatPrompt.DefaultTemplate(tokenizer)));
            Engine = new InferenceEngine(new BatchDecoder(bank, tokenizer), engine);
        }
        catch
        {
            bank.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>The model, adapters, tokenizer and chat prompt being served.</summary>
    public ServedModel Served { get; }

    /// <summary>The queue and worker that batch requests.</summary>
    public InferenceEngine Engine { get; }

    /// <summary>Streams the answer to a request; completes with the finish reason and token count at the end.</summary>
    /// <exception cref="InvalidOperationException">The engine's queue is full.</exception>
    public async IAsyncEnumerable<SequenceEvent> StreamAsync(SequenceRequest request,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var observer = new ChannelObserver(cancellationToken);
        if (!Engine.TrySubmit(request, observer)) throw new InvalidOperationException("the serving queue is full");
        await foreach (var e in observer.Events.ReadAllAsync(cancellationToken))
        {
            if (e.Error is not null) throw new InvalidOperationException($"generation failed: {e.Error.Message}", e.Error);
            yield return e;
        }
    }

    /// <summary>A request for the named model (base or adapter) from already-encoded prompt ids.</summary>
    /// <exception cref="ArgumentException">No model of that name.</exception>
    public SequenceRequest Request(string modelName, long[] promptIds, GenerationOptions options) =>
        new(promptIds, Served.Resolve(modelName) ?? throw new ArgumentException(
            $"no model named '{modelName}'; this server offers: {string.Join(", ", Served.Names)}"), options);

    /// <summary>Stops the engine, then frees the adapters and the model (the session owns them).</summary>
    public void Dispose()
    {
        Engine.Dispose();
        Served.Adapters.Dispose();
        model.Dispose();
    }
}
