using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using FedLlm.Monitoring;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FedLlm.Network.Dashboard;

/// <summary>
/// A read-only live dashboard of a federated run: one self-contained HTML page (inline script and SVG charts, no external
/// resources) that polls <c>GET /api/dashboard</c>, the <see cref="RunMonitor"/>'s snapshot as JSON. Plain HTTP bound to
/// loopback by default: it shows metrics, never tensors, and takes no input.
/// </summary>
public sealed class DashboardServer : IAsyncDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a round with no finite loss shows "NaN", not a 500
    };

    private readonly WebApplication app;

    DashboardServer(WebApplication app, Uri address)
    {
        this.app = app;
        Address = address;
    }

    /// <summary>Where the page is, e.g. http://127.0.0.1:8090/.</summary>
    public Uri Address { get; }

    /// <summary>The page's HTML, from the assembly's embedded resource.</summary>
    public static string Page()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("FedLlm.Network.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("the dashboard page is missing from FedLlm.Network's resources");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Parses "HOST:PORT" (or a bare port, on loopback) as the dashboard's listen address.</summary>
    /// <exception cref="ArgumentException">Not an IP address and port (the message names <paramref name="flag"/>).</exception>
    public static IPEndPoint ParseAddress(string value, string flag = "--dashboard")
    {
        if (int.TryParse(value, out int bare) && bare is >= 0 and <= 65535) return new IPEndPoint(IPAddress.Loopback, bare);
        string text = value.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? "127.0.0.1" + value["localhost".Length..] : value;
        return IPEndPoint.TryParse(text, out var endpoint) && text.Contains(':')
            ? endpoint
            : throw new ArgumentException($"{flag} '{value}' is not HOST:PORT (e.g. 127.0.0.1:8090) or a port");
    }

    /// <summary>Starts serving the page and <paramref name="monitor"/>'s snapshots on <paramref name="listen"/> (port 0
    /// picks a free one; see <see cref="Address"/>).</summary>
    public static async Task<DashboardServer> StartAsync(RunMonitor monitor, IPEndPoint listen, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(monitor);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(listen));
        var app = builder.Build();
        string page = Page();
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        app.MapGet("/api/dashboard", () => Results.Json(monitor.Snapshot(), Json));
        await app.StartAsync(cancellationToken);
        string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new DashboardServer(app, new Uri(bound.EndsWith('/') ? bound : bound + "/"));
    }

    /// <summary>Stops the web server and frees it.</summary>
    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
