using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace FedLlm.Network;

/// <summary>One line per event, with a UTC timestamp: what operators grep and what the process tests read.</summary>
public static class FedLlmLogging
{
    /// <summary>Sets <paramref name="builder"/> to single-line console output with UTC timestamps and no colours, at
    /// Information, keeping only warnings from ASP.NET Core and gRPC.</summary>
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

    /// <summary>A logger factory configured by <see cref="Configure"/>; the caller disposes it.</summary>
    public static ILoggerFactory CreateFactory() => LoggerFactory.Create(Configure);
}
