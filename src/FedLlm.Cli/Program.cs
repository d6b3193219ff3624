using FedLlm.Cli;

return FedLlmApp.Run(args);
