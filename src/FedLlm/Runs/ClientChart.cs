using ScottPlot;

namespace FedLlm.Runs;

/// <summary>A PNG of each client's score on its own held-out split: per run, the global adapter beside the personal,
/// fine-tuned and local-only ones, one group of bars per client.</summary>
public static class ClientChart
{
    /// <summary>Writes the chart of the <paramref name="outcomes"/> that have per-client scores to <paramref
    /// name="path"/> (one panel per run; exact match in percent), creating the folder.</summary>
    public static void WritePng(string path, IReadOnlyList<RunOutcome> outcomes)
    {
        var withScores = outcomes.Where(o => o.Personal is not null).ToList();
        var multiplot = new Multiplot();
        multiplot.AddPlots(withScores.Count);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        var palette = new ScottPlot.Palettes.Category10();
        var kinds = new (string Name, Func<ClientScores, Federation.EvaluationResult?> Pick)[]
        {
            ("global", c => c.Global), ("personal", c => c.Personal), ("fine-tuned", c => c.Finetuned), ("local-only", c => c.LocalOnly),
        };
        for (int p = 0; p < withScores.Count; p++)
        {
            var plot = multiplot.GetPlot(p);
            var clients = withScores[p].Personal!.Clients;
            var present = kinds.Where(k => clients.Any(c => k.Pick(c) is not null)).ToList();
            for (int k = 0; k < present.Count; k++)
            {
                var bars = clients.Select((c, i) => present[k].Pick(c) is { } r
                    ? new Bar { Position = i * (present.Count + 1) + k, Value = r.Score * 100, FillColor = palette.GetColor(Array.IndexOf(kinds, present[k])) }
                    : null).OfType<Bar>().ToList();
                var plotted = plot.Add.Bars(bars);
                plotted.LegendText = present[k].Name;
            }
            plot.Axes.Bottom.SetTicks(clients.Select((_, i) => (double)(i * (present.Count + 1) + (present.Count - 1) / 2.0)).ToArray(),
                clients.Select(c => $"client {c.Client}").ToArray());
            plot.Title($"{withScores[p].Name}: own held-out exact match (%)");
            plot.Axes.SetLimitsY(0, 100);
            plot.ShowLegend(Edge.Right);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        multiplot.SavePng(path, Math.Max(700, 700 * withScores.Count), 450);
    }
}
