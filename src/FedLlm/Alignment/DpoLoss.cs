using TorchSharp;
using static TorchSharp.torch;

namespace FedLlm.Alignment;

/// <summary>
/// The DPO loss (Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
/// Model", eq. 7) with TRL's sigmoid form and optional label smoothing (conservative DPO).
/// </summary>
/// <remarks>
/// With h = β·[(log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x))], the per-pair loss is
/// −(1−ε)·log σ(h) − ε·log σ(−h); ε = 0 is the paper's loss. The implicit rewards are β·(log πθ − log π_ref).
/// </remarks>
public static class DpoLoss
{
    /// <summary>Per-pair losses (N) from the four (N) log-probability tensors; differentiable in the policy's.</summary>
    public static Tensor PerPair(Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected,
        double beta, double labelSmoothing = 0)
    {
        using var scope = NewDisposeScope();
        // Every Scalar named: an implicit one can be finalised while libtorch reads it (Runtime.Scalars).
        using var betaScalar = beta.ToScalar();
        using var negativeBeta = (-beta).ToScalar();
        using var unsmoothed = (1 - labelSmoothing).ToScalar();
        using var smoothing = labelSmoothing.ToScalar();
        var logits = (policyChosen - policyRejected) - (referenceChosen - referenceRejected); // (N)
        var losses = -nn.functional.logsigmoid(logits.mul(betaScalar)).mul(unsmoothed);
        if (labelSmoothing != 0) losses = losses - nn.functional.logsigmoid(logits.mul(negativeBeta)).mul(smoothing);
        return losses.MoveToOuterDisposeScope();
    }

    /// <summary>The metrics TRL logs for a batch, computed in float64 from the four log-probability arrays.</summary>
    public static DpoMetrics Metrics(IReadOnlyList<double> policyChosen, IReadOnlyList<double> policyRejected,
        IReadOnlyList<double> referenceChosen, IReadOnlyList<double> referenceRejected, double beta, double labelSmoothing = 0)
    {
        int n = policyChosen.Count;
        if (n == 0 || policyRejected.Count != n || referenceChosen.Count != n || referenceRejected.Count != n)
            throw new ArgumentException("the four log-probability lists must be non-empty and of equal length");
        double loss = 0, chosen = 0, rejected = 0, correct = 0, logpsChosen = 0, logpsRejected = 0;
        for (int i = 0; i < n; i++)
        {
            double rewardChosen = beta * (policyChosen[i] - referenceChosen[i]);
            double rewardRejected = beta * (policyRejected[i] - referenceRejected[i]);
            double h = rewardChosen - rewardRejected;
            loss += (1 - labelSmoothing) * Softplus(-h) + labelSmoothing * Softplus(h);
            chosen += rewardChosen;
            rejected += rewardRejected;
            if (rewardChosen > rewardRejected) correct++; // strict, as TRL: a tie (e.g. at initialisation) is not a win
            logpsChosen += policyChosen[i];
            logpsRejected += policyRejected[i];
        }
        return new DpoMetrics(n, loss / n, chosen / n, rejected / n, correct / n, logpsChosen / n, logpsRejected / n);
    }

    /// <summary>log(1 + eˣ) = −log σ(−x), without overflow for large |x|.</summary>
    static double Softplus(double x) => x > 0 ? x + Math.Log(1 + Math.Exp(-x)) : Math.Log(1 + Math.Exp(x));
}

/// <summary>DPO metrics as TRL logs them, means over <see cref="Pairs"/> pairs.</summary>
/// <param name="Pairs">Pairs the means are over (the weight when aggregating).</param>
/// <param name="Loss">Mean DPO loss.</param>
/// <param name="RewardsChosen">rewards/chosen: mean β·(log πθ − log π_ref)(y_w).</param>
/// <param name="RewardsRejected">rewards/rejected: mean β·(log πθ − log π_ref)(y_l).</param>
/// <param name="RewardsAccuracy">rewards/accuracies: share of pairs whose chosen reward exceeds the rejected one.</param>
/// <param name="LogpsChosen">logps/chosen: mean log πθ(y_w|x).</param>
/// <param name="LogpsRejected">logps/rejected: mean log πθ(y_l|x).</param>
public sealed record DpoMetrics(int Pairs, double Loss, double RewardsChosen, double RewardsRejected, double RewardsAccuracy,
    double LogpsChosen, double LogpsRejected)
{
    /// <summary>rewards/margins: mean chosen reward minus mean rejected reward.</summary>
    public double RewardsMargin => RewardsChosen - RewardsRejected;

    /// <summary>The metrics under TRL's log keys.</summary>
    public IReadOnlyDictionary<string, double> ToTrlLog() => new Dictionary<string, double>
    {
        ["loss"] = Loss,
        ["rewards/chosen"] = RewardsChosen,
        ["rewards/rejected"] = RewardsRejected,
        ["rewards/accuracies"] = RewardsAccuracy,
        ["rewards/margins"] = RewardsMargin,
        ["logps/chosen"] = LogpsChosen,
        ["logps/rejected"] = LogpsRejected,
    };

    /// <summary>Pair-weighted means of several batches' metrics (a step's micro-batches, a round's steps).</summary>
    /// <exception cref="ArgumentException">There is nothing to aggregate.</exception>
    public static DpoMetrics Aggregate(IEnumerable<DpoMetrics> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        var list = parts.ToList();
        int n = list.Sum(m => m.Pairs);
        if (n == 0) throw new ArgumentException("no metrics to aggregate", nameof(parts));
        double Mean(Func<DpoMetrics, double> f) => list.Sum(m => f(m) * m.Pairs) / n;
        return new DpoMetrics(n, Mean(m => m.Loss), Mean(m => m.RewardsChosen), Mean(m => m.RewardsRejected),
            Mean(m => m.RewardsAccuracy), Mean(m => m.LogpsChosen), Mean(m => m.LogpsRejected));
    }
}
