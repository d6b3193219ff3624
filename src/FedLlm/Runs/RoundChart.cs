using ScottPlot;

namespace FedLlm.Runs;

/// <summary>A PNG of the per-round metrics: clients' mean training loss and held-out score of each run, side by side.</summary>
public static class RoundChart
{
    public static void WritePng(string path, IReadOnlyList<RunOutcome> outcomes)
    {
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        var loss = multiplot.GetPlot(0);
        var score = multiplot.GetPlot(1);
        var palette = new ScottPlot.Palettes.Category10();
        int index = 0;
        foreach (var outcome in outcomes.Where(o => o.Rounds.Count > 0))
        {
            var color = palette.GetColor(index++);
            var rounds = outcome.Rounds;
            var lossLine = loss.Add.Scatter(rounds.Select(r => (double)r.Round + 1).ToArray(), rounds.Select(r => r.ClientLoss.Values.Average()).ToArray());
            lossLine.LegendText = outcome.Name;
            lossLine.Color = color;
            var evaluated = rounds.Where(r => r.EvalScore is not null).ToList();
            if (evaluated.Count > 0)
            {
                var scoreLine = score.Add.Scatter(evaluated.Select(r => (double)r.Round + 1).ToArray(), evaluated.Select(r => r.EvalScore!.Value * 100).ToArray());
                scoreLine.LegendText = outcome.Name;
                scoreLine.Color = color;
            }
        }
        // Baselines have no rounds: draw their final score as a dashed level.
        foreach (var outcome in outcomes.Where(o => o.Rounds.Count == 0 && o.Final is not null))
        {
            var line = score.Add.HorizontalLine(outcome.Final!.Score * 100);
            line.LegendText = outcome.Name;
            line.Color = palette.GetColor(index++);
            line.LinePattern = LinePattern.Dashed;
        }
        loss.Title("clients' mean training loss");
        loss.XLabel("round");
        // The first round's loss (an untrained adapter) can dwarf the rest; scale to the rounds after it.
        loss.Axes.SetLimitsY(0, Math.Max(0.5, 1.1 * outcomes.SelectMany(o => o.Rounds.Skip(1)).Select(r => r.ClientLoss.Values.Average()).DefaultIfEmpty(1).Max()));
        score.Title("held-out exact match (%)");
        score.XLabel("round");
        score.Axes.SetLimitsY(0, 100);
        loss.ShowLegend(Edge.Right);
        score.ShowLegend(Edge.Right);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        multiplot.SavePng(path, 1400, 500);
    }
}
