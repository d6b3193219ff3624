using FedLlm.Training;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace FedLlm.Tests.Training;

/// <summary>TorchSharp hands libtorch raw handles; a temporary Scalar or Tensor whose handle has been read is garbage,
/// and a collection plus its finalizer can free the native object while the call still reads it. The optimizer step
/// keeps every such object alive; this drives it while another thread collects and finalizes without pause (before
/// the fix, this failed within one or two seconds in three runs of four with libtorch's "Expected false to be true" from
/// c10::Scalar::toFloat: a freed Scalar).</summary>
public class FinalizerRaceTests
{
    [Fact]
    public async Task The_optimizer_step_survives_collections_and_finalizers_running_during_its_native_calls()
    {
        var parameters = Enumerable.Range(0, 256).Select(i => ($"p{i}", new Parameter(randn(8, 8)))).ToList();
        using var optimizer = new AdamW(parameters, weightDecay: 0.01);
        using var stop = new CancellationTokenSource();
        var collector = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect(0, GCCollectionMode.Forced, blocking: true);
                GC.WaitForPendingFinalizers();
            }
        });
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                foreach (var (_, p) in parameters)
                {
                    using var g = randn(8, 8);
                    p.grad = g;
                }
                optimizer.Step(1e-3);
            }
        }
        finally
        {
            stop.Cancel();
            await collector;
        }
        Assert.All(parameters, p => Assert.True(p.Item2.isfinite().all().item<bool>()));
    }
}
