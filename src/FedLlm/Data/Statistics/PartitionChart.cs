using ScottPlot;

namespace FedLlm.Data.Statistics;

/// <summary>Draws a <see cref="PartitionReport"/> as stacked bars: one bar per client, one colour per label.</summary>
/// <remarks>
/// Labels beyond <see cref="MaxLegendLabels"/> (e.g. a numeric score column) are drawn as one grey "other" segment, so the
/// legend stays readable. Unlabeled data gives plain size bars.
/// </remarks>
public static class PartitionChart
{
    /// <summary>The most labels drawn in their own colour.</summary>
    public const int MaxLegendLabels = 9;

    // Category10 without its grey, which is kept for the "other" segment.
    private static readonly Color[] LabelColors = new ScottPlot.Palettes.Category10().Colors.Where((_, i) => i != 7).ToArray();
    private static readonly Color OtherColor = Colors.LightGray;

    /// <summary>Writes the chart as a PNG.</summary>
    /// <param name="report">The statistics.</param>
    /// <param name="path">The PNG file; overwritten.</param>
    /// <param name="title">The chart title, e.g. the data set and the scheme.</param>
    /// <param name="width">Width in pixels; by default wide enough for the client count.</param>
    /// <param name="height">Height in pixels.</param>
    public static void WritePng(PartitionReport report, string path, string title, int? width = null, int height = 540)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(title);
        var plot = Build(report, title);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        // Room for the bars plus the legend beside them.
        var legend = report.Labels.Count > 0 ? 280 : 0;
        plot.SavePng(path, width ?? Math.Clamp(240 + 48 * report.Clients.Count, 640, 2400) + legend, height);
    }

    private static Plot Build(PartitionReport report, string title)
    {
        var plot = new Plot();
        var shown = Math.Min(report.Labels.Count, MaxLegendLabels);
        var hasOther = report.Labels.Count > shown;
        var bars = new List<Bar>();
        foreach (var client in report.Clients)
        {
            if (report.Labels.Count == 0)
            {
                bars.Add(new Bar { Position = client.Client, ValueBase = 0, Value = client.Examples, FillColor = LabelColors[0] });
                continue;
            }

            double bottom = 0;
            for (var k = 0; k < report.Labels.Count; k++)
            {
                var count = client.LabelCounts[k];
                if (count == 0) continue;
                var color = k < shown ? LabelColors[k] : OtherColor;
                bars.Add(new Bar { Position = client.Client, ValueBase = bottom, Value = bottom + count, FillColor = color, LineWidth = 0 });
                bottom += count;
            }
        }

        plot.Add.Bars(bars);
        if (report.Labels.Count > 0)
        {
            for (var k = 0; k < shown; k++)
                plot.Legend.ManualItems.Add(new LegendItem { LabelText = $"{report.Labels[k]} ({report.TotalLabelCounts[k]})", FillColor = LabelColors[k] });
            if (hasOther)
                plot.Legend.ManualItems.Add(new LegendItem { LabelText = $"{report.Labels.Count - shown} other labels", FillColor = OtherColor });
            // Outside the data area, so a tall bar is never hidden behind it.
            plot.ShowLegend(Edge.Right);
        }

        var positions = report.Clients.Select(c => (double)c.Client).ToArray();
        var names = report.Clients.Select(c => c.Client.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        plot.Axes.Bottom.SetTicks(positions, names);
        plot.Axes.Margins(bottom: 0);
        plot.Title(title);
        plot.XLabel("client");
        plot.YLabel("examples");
        return plot;
    }
}
