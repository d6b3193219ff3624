using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Tokenization;

/// <summary>Loads the tokenizer of a Hugging Face checkpoint folder.</summary>
public static class TokenizerLoader
{
    /// <summary>The Rust library's file, preferred when present (as transformers' fast tokenizers prefer it).</summary>
    public const string TokenizerJsonFile = "tokenizer.json";

    /// <summary>A SentencePiece model (Llama 2, TinyLlama, Mistral), used when there is no tokenizer.json.</summary>
    public const string SentencePieceModelFile = "tokenizer.model";

    /// <summary>
    /// Loads tokenizer.json, or else tokenizer.model, together with tokenizer_config.json, special_tokens_map.json,
    /// chat_template.jinja and generation_config.json where present.
    /// </summary>
    /// <remarks>
    /// Encodes and decodes as <c>AutoTokenizer.from_pretrained(directory)</c> does; a tokenizer.model is converted as
    /// transformers converts it for LlamaTokenizerFast. A LlamaTokenizer config that sets add_prefix_space makes
    /// transformers rebuild the tokenizer from tokenizer.model even when tokenizer.json exists; so does this loader.
    /// The returned tokenizer holds native memory: it is <see cref="IDisposable"/>, and a finalizer frees it otherwise.
    /// </remarks>
    /// <param name="directory">The checkpoint folder.</param>
    /// <exception cref="TokenizerException">
    /// The folder is missing, has neither tokenizer file (the message lists what it has), or a file is malformed
    /// (the message names it).
    /// </exception>
    public static ITextTokenizer Load(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory))
        {
            throw new TokenizerException($"Tokenizer folder '{directory}' does not exist.");
        }

        var config = TokenizerConfig.Load(directory);
        string jsonPath = Path.Combine(directory, TokenizerJsonFile);
        string modelPath = Path.Combine(directory, SentencePieceModelFile);
        bool rebuildFromModel = config.IsLlamaClass && config.AddPrefixSpace is not null && File.Exists(modelPath);

        if (File.Exists(jsonPath) && !rebuildFromModel)
        {
            var json = TokenizerConfig.Wrap(jsonPath, () => JsonNode.Parse(File.ReadAllText(jsonPath))?.AsObject()
                ?? throw new JsonException("the file holds JSON null"));
            return HfTokenizer.Create(json, config, jsonPath);
        }

        if (File.Exists(modelPath))
        {
            SentencePieceModel model;
            try
            {
                model = SentencePieceModel.Parse(File.ReadAllBytes(modelPath));
            }
            catch (Exception e) when (e is InvalidDataException or DecoderFallbackException)
            {
                throw new TokenizerException($"Cannot read '{modelPath}' as a SentencePiece model: {e.Message}", e);
            }

            // LlamaTokenizer's defaults, from the model itself rather than hard-coded strings.
            foreach (var (key, id) in new[] { ("bos_token", model.BosId), ("eos_token", model.EosId), ("unk_token", model.UnkId) })
            {
                if (model.PieceAt(id) is string piece)
                {
                    config.SetDefaultNamedToken(key, piece);
                }
            }

            return HfTokenizer.Create(SentencePieceConverter.ToTokenizerJson(model, config, modelPath), config, modelPath, llamaClass: true);
        }

        string[] present = Directory.EnumerateFileSystemEntries(directory)
            .Select(p => Path.GetFileName(p) + (Directory.Exists(p) ? "/" : ""))
            .Order(StringComparer.Ordinal)
            .ToArray();
        throw new TokenizerException(
            $"Tokenizer folder '{directory}' has neither {TokenizerJsonFile} nor {SentencePieceModelFile}; "
            + (present.Length == 0 ? "it is empty." : $"it holds: {string.Join(", ", present)}."));
    }
}
