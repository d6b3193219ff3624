using FedLlm.Cli.Commands;
using Spectre.Console;
using Spectre.Console.Cli;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("fedllm");
    config.AddCommand<TrainCommand>("train")
        .WithDescription("Fine-tune LoRA adapters on instruction data (Alpaca schema). With no arguments: the embedded default model and data.");
    config.AddCommand<SimulateCommand>("simulate")
        .WithDescription("Federated fine-tuning of many clients in one process, compared with local-only and centralised training. With no arguments: the embedded default.");
    config.AddCommand<ServerCommand>("server")
        .WithDescription("Run a federation server: clients on other machines dial in with `fedllm client`. TLS by default.");
    config.AddCommand<ClientCommand>("client")
        .WithDescription("Join a federation server and train on this machine's own data.");
    config.AddCommand<StatusCommand>("status")
        .WithDescription("Show a federation server's round, connected clients and last metrics.");
    config.AddCommand<AdminCommand>("admin")
        .WithDescription("Operate a running federation server: stop, abort-round, remove-client ID (with an admin certificate from `fedllm certs --admin`).");
    config.AddCommand<GenerateCommand>("generate")
        .WithDescription("Answer a prompt with a base model and an optional adapter.");
    config.AddCommand<MergeCommand>("merge")
        .WithDescription("Fold a PEFT adapter into its base model and write a plain Hugging Face checkpoint folder (fp32, bf16 or fp16).");
    config.AddCommand<ExportCommand>("export")
        .WithDescription("Write a model (+ optional adapter) as a GGUF file for llama.cpp (--type f32, f16 or q8_0), tokenizer included.");
    config.AddCommand<EvalCommand>("eval")
        .WithDescription("Score a model (+ adapter) on a benchmark from local files: MMLU, BBH, GSM8K, FinGPT sentiment, BLEU/ROUGE-L… With no arguments: the embedded default on its held-out set.");
    config.AddCommand<CertsCommand>("certs")
        .WithDescription("Create a CA, the server's and each client's certificate and token: a provisioning kit per participant (mutual TLS).");
    config.AddBranch("data", data =>
    {
        data.SetDescription("Inspect data sets in their published schemas.");
        data.AddCommand<DataStatsCommand>("stats")
            .WithDescription("Load a data set, partition it among clients (iid, dirichlet, shards, quantity) and show per-client statistics and a chart.");
        data.AddCommand<DataSplitCommand>("split")
            .WithDescription("Write one Alpaca JSONL file per client (client-N.jsonl), partitioned as `fedllm simulate` does: the clients' own data for a networked run.");
    });
    config.SetExceptionHandler((exception, _) =>
    {
        // Bad input is the user's to fix: print the message that names the file/field, not a stack trace.
        AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {exception.Message}");
        if (Environment.GetEnvironmentVariable("FEDLLM_DEBUG") == "1") AnsiConsole.WriteException(exception);
        return 1;
    });
});
return app.Run(args);
