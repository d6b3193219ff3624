using System.Text.Json;
using System.Text.Json.Nodes;

namespace FedLlm.Training;

/// <summary>
/// trainer_state.json in Hugging Face Trainer's schema (transformers' TrainerState.save_to_json): <c>global_step</c>
/// and <c>log_history</c>, one entry per optimizer step such as <c>{"loss": 1.93, "step": 1}</c> (DPO steps add
/// TRL's keys: <c>rewards/chosen</c>, <c>logps/rejected</c>…), so tools that plot a Trainer run read FedLlm's too.
/// </summary>
/// <remarks>What FedLlm needs to resume exactly and HF has no field for (the seed, the optimizer's step count) sits where
/// HF keeps callback state, <c>stateful_callbacks.FedLlm = {"args": {"seed"}, "attributes": {"optimizer_steps"}}</c>,
/// which HF's loader accepts. Files in FedLlm's earlier schema (<c>StepLosses</c>) still load.</remarks>
public static class TrainerStateJson
{
    /// <summary>trainer_state.json's text for <paramref name="state"/>.</summary>
    public static string Write(TrainerState state)
    {
        var history = new JsonArray();
        for (int i = 0; i < state.StepLosses.Count; i++)
        {
            var entry = new JsonObject();
            if (state.StepMetrics is { } metrics && i < metrics.Count && metrics[i] is { } stepMetrics)
                foreach (var (key, value) in stepMetrics.OrderBy(kv => kv.Key, StringComparer.Ordinal)) entry[key] = value;
            entry["loss"] = state.StepLosses[i];
            entry["step"] = i + 1;
            history.Add(entry);
        }
        var root = new JsonObject
        {
            ["best_metric"] = null,
            ["best_model_checkpoint"] = null,
            ["global_step"] = state.Step,
            ["is_hyper_param_search"] = false,
            ["is_local_process_zero"] = true,
            ["is_world_process_zero"] = true,
            ["log_history"] = history,
            ["logging_steps"] = 1,
            ["stateful_callbacks"] = new JsonObject
            {
                ["FedLlm"] = new JsonObject
                {
                    ["args"] = new JsonObject { ["seed"] = state.Seed, ["objective"] = state.Objective },
                    ["attributes"] = new JsonObject { ["optimizer_steps"] = state.OptimizerSteps, ["step_metrics"] = state.StepMetrics is not null },
                },
            },
            ["trial_name"] = null,
            ["trial_params"] = null,
        };
        return root.ToJsonString(new JsonSerializerOptions(Io.JsonDefaults.Options) { WriteIndented = true });
    }

    /// <summary>A number as written by <see cref="Write"/>: a JSON number, or "NaN"/"Infinity" for a non-finite loss.</summary>
    static double Number(JsonNode node) => node.GetValueKind() == JsonValueKind.String
        ? double.Parse(node.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture)
        : node.GetValue<double>();

    /// <exception cref="InvalidDataException">Malformed JSON or a missing field (the message names <paramref name="path"/> and the field).</exception>
    public static TrainerState Read(string json, string path)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: malformed: {e.Message}", e); }
        if (root is not JsonObject o) throw new InvalidDataException($"{path}: expected a JSON object");
        try
        {
            if (o.ContainsKey("StepLosses")) // FedLlm's earlier schema
                return JsonSerializer.Deserialize<TrainerState>(json, Io.JsonDefaults.Options) ?? throw new InvalidDataException($"{path}: empty");
            var fedllm = o["stateful_callbacks"]?["FedLlm"] ?? throw new InvalidDataException($"{path}: no stateful_callbacks.FedLlm (seed, optimizer steps); not written by FedLlm");
            long seed = fedllm["args"]?["seed"]?.GetValue<long>() ?? throw new InvalidDataException($"{path}: missing stateful_callbacks.FedLlm.args.seed");
            long optimizerSteps = fedllm["attributes"]?["optimizer_steps"]?.GetValue<long>()
                ?? throw new InvalidDataException($"{path}: missing stateful_callbacks.FedLlm.attributes.optimizer_steps");
            bool hasMetrics = fedllm["attributes"]?["step_metrics"]?.GetValue<bool>() ?? false;
            int step = o["global_step"]?.GetValue<int>() ?? throw new InvalidDataException($"{path}: missing global_step");
            var entries = (o["log_history"] as JsonArray ?? throw new InvalidDataException($"{path}: missing log_history"))
                .OfType<JsonObject>().Where(e => e.ContainsKey("loss")).ToList();
            string? objective = fedllm["args"]?["objective"]?.GetValue<string>();
            var losses = entries.Select(e => Number(e["loss"]!)).ToList();
            var metrics = hasMetrics
                ? entries.Select(e => (IReadOnlyDictionary<string, double>)e.Where(kv => kv.Key != "step" && kv.Value is JsonValue)
                    .ToDictionary(kv => kv.Key, kv => Number(kv.Value!))).ToList()
                : null;
            return new TrainerState(step, optimizerSteps, seed, losses, metrics, objective);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new InvalidDataException($"{path}: a field has the wrong type: {e.Message}", e);
        }
    }
}
