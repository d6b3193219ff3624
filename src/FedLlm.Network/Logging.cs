using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace FedLlm.Network;

/// <summary>One line per event, with a UTC timestamp: what operators grep and what the process tests read.</summary>
public static class FedLlmLogging
{
    public static void Configure(ILoggingBuilder builder)
    {
        builder.ClearProviders();
        builder.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.ColorBehavior = LoggerColorBehavior.Disabled;
        });
        builder.SetMinimumLevel(LogLevel.Information);
        // Kestrel and gRPC log each request at Information; only their warnings matter here.
        builder.AddFilter("Microsoft", LogLevel.Warning);
        builder.AddFilter("Grpc", LogLevel.Warning);
    }

    public static ILoggerFactory CreateFactory() => LoggerFactory.Create(Configure);
}
