using FedLlm.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FedLlm.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter, 2019) exactly as torch.optim.AdamW computes it (decoupled weight decay, bias
/// correction, eps added after the bias-corrected square root). Written out rather than taken from TorchSharp so that
/// its state is ours to checkpoint, restore, reset per federated round or keep per client.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly IReadOnlyList<(string Name, Parameter Parameter)> parameters;
    private readonly Dictionary<string, (Tensor ExpAvg, Tensor ExpAvgSq)> moments = new();

    /// <summary>An optimizer over <paramref name="parameters"/> (name-keyed, so its state saves and restores by name)
    /// with torch.optim.AdamW's defaults. Moments are created on the first step that sees a parameter's
    /// gradient.</summary>
    /// <param name="parameters">The trainable parameters (the LoRA A and B matrices) with their state-dict
    /// names.</param>
    /// <param name="beta1">Decay of the first moment.</param>
    /// <param name="beta2">Decay of the second moment.</param>
    /// <param name="eps">Added to the bias-corrected √v.</param>
    /// <param name="weightDecay">Decoupled weight decay λ: p ← p − lr·λ·p before the Adam step; 0 = none.</param>
    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.0)
    {
        this.parameters = parameters.ToList();
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
    }

    /// <summary>β1, the decay of the first moment m (0.9).</summary>
    public double Beta1 { get; }

    /// <summary>β2, the decay of the second moment v (0.999).</summary>
    public double Beta2 { get; }

    /// <summary>ε, added to the bias-corrected √v to keep the step finite (1e-8).</summary>
    public double Eps { get; }

    /// <summary>Decoupled weight decay λ (0 = none).</summary>
    public double WeightDecay { get; }

    /// <summary>Optimizer steps taken (the t of bias correction).</summary>
    public long StepCount { get; private set; }

    /// <summary>The parameters this optimizer updates, with their names.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters => parameters;

    /// <summary>Zeroes every parameter's gradient in place (parameters without one are left alone).</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in parameters)
            if (p.grad is { } g) g.zero_();
    }

    /// <summary>
    /// Scales the gradients so that their global L2 norm is at most <paramref name="maxNorm"/> (0 = no clipping) and
    /// returns the norm before clipping, as transformers' Trainer logs it.
    /// </summary>
    public double ClipGradientNorm(double maxNorm)
    {
        var grads = parameters.Select(p => p.Parameter).Where(p => p.grad is not null).ToList();
        if (grads.Count == 0) return 0;
        if (maxNorm <= 0)
        {
            using var noGrad = no_grad();
            return Math.Sqrt(grads.Sum(p => p.grad!.square().sum().ToScalarDouble()));
        }
        return nn.utils.clip_grad_norm_(grads, maxNorm);
    }

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    public void Step(double lr)
    {
        using var noGrad = no_grad();
        StepCount++;
        double biasCorrection1 = 1 - Math.Pow(Beta1, StepCount);
        double biasCorrection2 = 1 - Math.Pow(Beta2, StepCount);
        double stepSize = lr / biasCorrection1;
        double sqrtBiasCorrection2 = Math.Sqrt(biasCorrection2);
        // Every scalar and tensor handed to libtorch here is a `using` local, so it lives until the end of the step: a
        // temporary (a double converted to a Scalar, TorchSharp's own implicit alpha of add_(Scalar), an unnamed
        // p.grad) is garbage once its handle is read, and its finalizer can free the native object while the call still
        // reads it — the rare "Unknown scalar type" / use-after-free crashes seen in long runs.
        using var decay = (1 - lr * WeightDecay).ToScalar();
        using var beta2 = Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - Beta2).ToScalar();
        using var sqrtCorrection = sqrtBiasCorrection2.ToScalar();
        using var eps = Eps.ToScalar();
        using var negativeStep = (-stepSize).ToScalar();
        foreach (var (name, p) in parameters)
        {
            using var grad = p.grad;
            if (grad is null) continue;
            if (!moments.TryGetValue(name, out var m))
            {
                // TorchSharp's *_like put the result on torch's default device unless told, not on the input's.
                m = (zeros_like(p, device: p.device).DetachFromDisposeScope(), zeros_like(p, device: p.device).DetachFromDisposeScope());
                moments[name] = m;
            }
            if (WeightDecay != 0) p.mul_(decay);
            // lerp_ takes its weight as a tensor; a bare double would become a float64 scalar on torch's default device.
            using var weight = tensor(1 - Beta1, ScalarType.Float64, p.device);
            m.ExpAvg.lerp_(grad, weight);                                     // m ← β1·m + (1−β1)·g
            m.ExpAvgSq.mul_(beta2).addcmul_(grad, grad, oneMinusBeta2);       // v ← β2·v + (1−β2)·g²
            using var root = m.ExpAvgSq.sqrt();
            root.div_(sqrtCorrection).add_(eps, Scalars.One);                       // √v̂ + ε
            p.addcdiv_(m.ExpAvg, root, negativeStep);
        }
    }

    /// <summary>The state as name-keyed tensors ("{param}.exp_avg", "{param}.exp_avg_sq") plus the step count.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var (name, m) in moments)
        {
            yield return new(name + ".exp_avg", m.ExpAvg);
            yield return new(name + ".exp_avg_sq", m.ExpAvgSq);
        }
    }

    /// <summary>Restores what <see cref="StateTensors"/> saved; <paramref name="read"/> returns a tensor by name or null.</summary>
    public void LoadState(long stepCount, Func<string, Tensor?> read)
    {
        Reset();
        StepCount = stepCount;
        foreach (var (name, p) in parameters)
        {
            // State saved before optimizer keys became PEFT adapter keys named moments by module path.
            string? legacy = Peft.AdapterKeys.ModulePathKey(name);
            var expAvg = read(name + ".exp_avg") ?? (legacy is null ? null : read(legacy + ".exp_avg"));
            var expAvgSq = read(name + ".exp_avg_sq") ?? (legacy is null ? null : read(legacy + ".exp_avg_sq"));
            if (expAvg is null && expAvgSq is null) continue;
            if (expAvg is null || expAvgSq is null)
                throw new InvalidDataException($"optimizer state for '{name}' is incomplete (needs exp_avg and exp_avg_sq)");
            if (!expAvg.shape.SequenceEqual(p.shape) || !expAvgSq.shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"optimizer state for '{name}' has shape [{string.Join(",", expAvg.shape)}], parameter has [{string.Join(",", p.shape)}]");
            moments[name] = (expAvg.to(p.dtype).DetachFromDisposeScope(), expAvgSq.to(p.dtype).DetachFromDisposeScope());
        }
    }

    /// <summary>Forgets moments and step count (a fresh optimizer, as each federated round starts by default).</summary>
    public void Reset()
    {
        foreach (var (a, b) in moments.Values) { a.Dispose(); b.Dispose(); }
        moments.Clear();
        StepCount = 0;
    }

    /// <summary>Frees the moment tensors (as <see cref="Reset"/>).</summary>
    public void Dispose() => Reset();
}
