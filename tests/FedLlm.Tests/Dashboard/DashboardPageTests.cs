using System.Net;
using FedLlm.Federation;
using FedLlm.Monitoring;
using FedLlm.Network.Dashboard;
using Microsoft.Playwright;
using SkiaSharp;

namespace FedLlm.Tests.Dashboard;

/// <summary>The dashboard page in headless Chromium (Debian's, driven by Playwright): what a person would look at.</summary>
public sealed class DashboardPageTests
{
    const string Chromium = "/usr/bin/chromium";

    static RoundRecord Round(int round, double loss, double evalLoss, double score, IReadOnlyList<string> clients) => new()
    {
        Round = round, LearningRate = 1e-4, Clients = clients,
        ClientLoss = clients.ToDictionary(c => c, _ => loss), UpdateNorms = clients.ToDictionary(c => c, _ => 0.1),
        GlobalStepNorm = 0.05, EvalLoss = evalLoss, EvalScore = score, BytesSent = 400_000L * (round + 1), BytesReceived = 300_000L * (round + 1), Seconds = 2,
    };

    /// <summary>Three committed rounds, round 4 open; client-2 was late in round 3 and client-3's update was refused.</summary>
    static RunMonitor Monitor()
    {
        var refused = new Dictionary<string, int> { ["client-3"] = 0 };
        var monitor = new RunMonitor("FedLlm test run")
        {
            Roster = () => new[] { "client-0", "client-1", "client-2", "client-3" }
                .Select(id => new RosterEntry(id, id != "client-2", 2, refused.GetValueOrDefault(id))).ToList(),
        };
        monitor.BeginRun("fedavg", totalRounds: 5, ["client-0", "client-1", "client-2", "client-3"]);
        double[] losses = [2.4, 1.9, 1.5];
        for (int r = 0; r < 3; r++)
        {
            string[] sampled = r == 2 ? ["client-0", "client-1", "client-2", "client-3"] : ["client-0", "client-1"];
            monitor.RoundStarted(r, sampled);
            if (r == 2) refused["client-3"] = 1;
            monitor.RoundClosed(sampled, ["client-0", "client-1"]);
            monitor.Report(Round(r, losses[r], losses[r] + 0.2, 0.3 + 0.1 * r, ["client-0", "client-1"]));
        }
        monitor.SetPrivacyBudget(1.234, 1e-5);
        return monitor;
    }

    [Fact]
    public async Task The_page_shows_rounds_participant_states_charts_bytes_and_the_privacy_budget()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: run build/install-test-deps.sh (Debian package chromium)");
        var monitor = Monitor();
        await using var server = await DashboardServer.StartAsync(monitor, new IPEndPoint(IPAddress.Loopback, 0));
        Assert.Equal(IPAddress.Loopback.ToString(), server.Address.Host);

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium, Headless = true,
            Args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        await page.GotoAsync(server.Address.ToString());
        await page.WaitForFunctionAsync("() => document.getElementById('status').textContent === 'running'");

        Assert.Equal("FedLlm test run", await page.TextContentAsync("#title"));
        Assert.Equal("fedavg", await page.TextContentAsync("#algorithm"));
        Assert.Equal("3 / 5 committed", await page.TextContentAsync("#round"));
        Assert.Equal(["submitted", "submitted", "late", "refused"],
            await page.Locator("#participants tbody tr td:nth-child(2)").AllTextContentsAsync());
        Assert.Equal("2", await page.TextContentAsync("#counts li[data-state=submitted] b"));
        Assert.Equal("1", await page.TextContentAsync("#counts li[data-state=refused] b"));
        Assert.Equal("1", await page.TextContentAsync("#counts li[data-state=late] b"));
        Assert.Equal(2, await page.Locator("#chart-loss polyline.series").CountAsync());   // train and held-out
        Assert.Equal(3, await page.Locator("#chart-score circle").CountAsync());
        Assert.Equal("2.4MB", await page.TextContentAsync("#bytes-sent"));              // 0.4 + 0.8 + 1.2 MB
        Assert.True(await page.IsVisibleAsync("#privacy"));
        Assert.Equal("1.234", await page.TextContentAsync("#epsilon"));

        // The page polls: a new round opening shows up without a reload.
        monitor.RoundStarted(3, ["client-2"]);
        await page.WaitForFunctionAsync("() => document.getElementById('round').textContent.startsWith('4 (open)')");
        Assert.Equal("training", await page.TextContentAsync("#participants tbody tr[data-client=client-2] td:nth-child(2)"));

        string shot = Path.Combine(AppContext.BaseDirectory, "dashboard.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        using var chart = SKBitmap.Decode(await page.Locator("#chart-loss").ScreenshotAsync());
        int blue = 0, drawn = 0;
        for (int y = 0; y < chart.Height; y++)
            for (int x = 0; x < chart.Width; x++)
            {
                var c = chart.GetPixel(x, y);
                if (c.Red < 235 || c.Green < 235 || c.Blue < 235) drawn++;
                if (c.Blue > 180 && c.Red < 90 && c.Green is > 80 and < 150) blue++; // #2f6fdb, the first series
            }
        Assert.True(drawn > chart.Width * chart.Height / 100, $"the loss chart is nearly blank: {drawn} drawn pixels of {chart.Width * chart.Height}");
        Assert.True(blue > 100, $"the train-loss line is missing from the chart: {blue} pixels of its colour");
    }

    [Fact]
    public async Task The_json_endpoint_is_read_only()
    {
        await using var server = await DashboardServer.StartAsync(Monitor(), new IPEndPoint(IPAddress.Loopback, 0));
        using var http = new HttpClient { BaseAddress = server.Address };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("api/dashboard")).StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.PostAsync("api/dashboard", new StringContent("{}"))).StatusCode);
    }

    [Theory]
    [InlineData("8090", "127.0.0.1:8090")]
    [InlineData("localhost:0", "127.0.0.1:0")]
    [InlineData("0.0.0.0:8090", "0.0.0.0:8090")]
    public void Listen_addresses_parse(string value, string expected) => Assert.Equal(expected, DashboardServer.ParseAddress(value).ToString());

    [Fact]
    public void A_bad_listen_address_names_the_flag() =>
        Assert.Contains("--dashboard", Assert.Throws<ArgumentException>(() => DashboardServer.ParseAddress("here")).Message);
}
