using FedLlm.Federation;
using ScottPlot;

namespace FedLlm.Runs;

/// <summary>
/// rounds.png, one panel per metric, read like a TensorBoard scalar panel: rounds 1 … R on integer ticks, labelled axes,
/// losses on a log scale (the first rounds' loss would flatten the rest on a linear one), every evaluated metric
/// (held-out loss and score, each further held-out metric such as macro-F1 or DPO's reward margin, each benchmark task
/// metric), the federated algorithms as lines with a ± one standard deviation band over seeds, the baselines' final
/// scores as dashed reference lines, and the constant-answer floor as a dotted one.
/// </summary>
public static class RoundChart
{
    const int PanelWidth = 620, PanelHeight = 420, Columns = 3;

    /// <summary>One seed's outcomes (the server's single run).</summary>
    public static void WritePng(string path, IReadOnlyList<RunOutcome> outcomes, ReportLabels? labels = null) =>
        WritePng(path, [new SeedOutcomes(0, outcomes)], labels);

    /// <summary>Every seed's outcomes: lines are means over seeds, bands ± one standard deviation.</summary>
    public static void WritePng(string path, IReadOnlyList<SeedOutcomes> seeds, ReportLabels? labels = null)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        labels ??= new ReportLabels();
        var panels = Panels(seeds, labels);
        int rows = (panels.Count + Columns - 1) / Columns;
        var multiplot = new Multiplot();
        multiplot.AddPlots(panels.Count);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(rows, Math.Min(Columns, panels.Count));
        var palette = new ScottPlot.Palettes.Category10();
        var names = seeds.SelectMany(s => s.Outcomes).Select(o => o.Name).Distinct().ToList();
        Color ColorOf(string name) => palette.GetColor(names.IndexOf(name));
        for (int i = 0; i < panels.Count; i++) Draw(multiplot.GetPlot(i), panels[i], seeds, labels, ColorOf);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        multiplot.SavePng(path, PanelWidth * Math.Min(Columns, panels.Count), PanelHeight * rows);
    }

    /// <summary>What one panel shows: a value of a round (federated curves) and of a final result (baseline levels).</summary>
    sealed record Panel(string Title, string YLabel, bool Log, bool Percent, Func<RoundRecord, double?> OfRound, Func<EvaluationResult, double?> OfFinal);

    static List<Panel> Panels(IReadOnlyList<SeedOutcomes> seeds, ReportLabels labels)
    {
        var all = seeds.SelectMany(s => s.Outcomes).ToList();
        var rounds = all.SelectMany(o => o.Rounds).ToList();
        var panels = new List<Panel>
        {
            new("clients' mean training loss (log scale)", "loss (nats per token, log)", true, false,
                r => r.ClientLoss.Count == 0 ? null : r.ClientLoss.Values.Average(), _ => null),
            new($"held-out {labels.LossName} (log scale)", $"{labels.LossName} (log)", true, false, r => r.EvalLoss, f => f.Loss),
            new($"held-out {labels.ScoreName}", $"{labels.ScoreName} (%)", false, true, r => r.EvalScore, f => f.Score),
        };
        var evalKeys = rounds.SelectMany(r => r.EvalMetrics?.Keys ?? Enumerable.Empty<string>())
            .Concat(all.SelectMany(o => o.Final?.Metrics?.Keys ?? Enumerable.Empty<string>())).Distinct().ToList();
        foreach (var key in evalKeys)
        {
            bool percent = IsFraction(key);
            panels.Add(new($"held-out {Readable(key)}", percent ? $"{Readable(key)} (%)" : Readable(key), false, percent,
                r => r.EvalMetrics?.TryGetValue(key, out double v) == true ? v : null, f => f.Metrics?.TryGetValue(key, out double v) == true ? v : null));
        }
        foreach (var key in rounds.SelectMany(r => r.TaskMetrics?.Keys ?? Enumerable.Empty<string>()).Distinct())
        {
            bool percent = IsFraction(key);
            panels.Add(new($"benchmark {key}", percent ? $"{key} (%)" : key, false, percent,
                r => r.TaskMetrics?.TryGetValue(key, out double v) == true ? v : null, _ => null));
        }
        return panels;
    }

    static void Draw(Plot plot, Panel panel, IReadOnlyList<SeedOutcomes> seeds, ReportLabels labels, Func<string, Color> colorOf)
    {
        double Shown(double value) => panel.Log ? Math.Log10(Math.Max(value, 1e-6)) : panel.Percent ? value * 100 : value;
        int maxRound = 1;
        foreach (var name in seeds.SelectMany(s => s.Outcomes).Where(o => !o.IsBaseline).Select(o => o.Name).Distinct())
        {
            // Per round: the values of every seed that has this metric on that round.
            var byRound = seeds.Select(s => s.Outcomes.FirstOrDefault(o => o.Name == name)).OfType<RunOutcome>()
                .SelectMany(o => o.Rounds.Select(r => (r.Number, Value: panel.OfRound(r))))
                .Where(p => p.Value is { } v && double.IsFinite(v))
                .GroupBy(p => p.Number, p => Shown(p.Value!.Value))
                .OrderBy(g => g.Key)
                .Select(g => (Round: (double)g.Key, Stat: SeedStatistic.Of(g.ToList())))
                .ToList();
            if (byRound.Count == 0) continue;
            maxRound = Math.Max(maxRound, (int)byRound[^1].Round);
            var color = colorOf(name);
            if (byRound.Any(p => p.Stat.Count > 1))
            {
                var band = plot.Add.FillY(byRound.Select(p => p.Round).ToArray(), byRound.Select(p => p.Stat.Mean - p.Stat.StandardDeviation).ToArray(),
                    byRound.Select(p => p.Stat.Mean + p.Stat.StandardDeviation).ToArray());
                band.FillColor = color.WithAlpha(0.2);
                band.LineWidth = 0;
            }
            var line = plot.Add.Scatter(byRound.Select(p => p.Round).ToArray(), byRound.Select(p => p.Stat.Mean).ToArray());
            line.LegendText = seeds.Count > 1 ? $"{name} (mean ± sd)" : name;
            line.Color = color;
            line.MarkerSize = byRound.Count > 40 ? 0 : 5;
        }
        foreach (var name in seeds.SelectMany(s => s.Outcomes).Where(o => o.IsBaseline).Select(o => o.Name).Distinct())
        {
            var values = seeds.Select(s => s.Outcomes.FirstOrDefault(o => o.Name == name)?.Final).OfType<EvaluationResult>()
                .Select(panel.OfFinal).OfType<double>().Where(double.IsFinite).ToList();
            if (values.Count == 0) continue;
            var level = plot.Add.HorizontalLine(Shown(values.Average()));
            level.LegendText = $"{name} (final)";
            level.Color = colorOf(name);
            level.LinePattern = LinePattern.Dashed;
        }
        if (panel.Percent && panel.Title.EndsWith(labels.ScoreName, StringComparison.Ordinal) && labels.ScoreFloor is { } floor)
        {
            var level = plot.Add.HorizontalLine(floor * 100);
            level.LegendText = "constant answer (most common held-out answer)";
            level.Color = Colors.Gray;
            level.LinePattern = LinePattern.Dotted;
        }
        plot.Title(panel.Title);
        plot.XLabel("round");
        plot.YLabel(panel.YLabel);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.SetLimitsX(0.5, maxRound + 0.5);
        if (panel.Log)
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                LabelFormatter = y => $"{Math.Pow(10, y):G3}",
            };
        else if (panel.Percent) plot.Axes.SetLimitsY(0, 100);
        plot.ShowLegend();
    }

    /// <summary>Metrics that are shares of items, drawn in percent.</summary>
    static bool IsFraction(string key) =>
        key.Contains("accuracy", StringComparison.OrdinalIgnoreCase) || key.Contains("f1", StringComparison.OrdinalIgnoreCase)
        || key.Contains("acc_norm", StringComparison.OrdinalIgnoreCase) || key.Contains("exact", StringComparison.OrdinalIgnoreCase);

    static string Readable(string key) => key switch
    {
        SimulationRunner.MacroF1Metric => "macro-F1 over the answers",
        _ => key.Replace("eval_", "", StringComparison.Ordinal).Replace('_', ' '),
    };
}
