using TorchSharp;

namespace FedLlm.Runtime;

/// <summary>
/// The threads of one decode step whose products all run on FedLlm's own kernels: libtorch's ops (norms, attention,
/// rotary, sampling) on the calling thread alone, and the products on as many threads as libtorch had
/// (<see cref="ProductThreads"/>).
/// </summary>
/// <remarks>
/// The ops of a decode step around its products are tiny, but some of them (attention, a vocabulary-wide argmax)
/// still open an OpenMP parallel region, which wakes libtorch's sleeping OpenMP thread on the core where
/// <see cref="SpinningWorkers"/>' worker spins for the next product; the two then take turns on that core
/// (`FedLlm.Bench decode-fedllm fp32 1`, bench/README.md). The setting is the calling thread's: libtorch keeps
/// OpenMP's and MKL's thread counts per thread, so other threads' work is untouched.
/// </remarks>
public static class DecodeThreading
{
    [ThreadStatic] static int productThreads;

    /// <summary>The threads FedLlm's decode products share on this thread: the count libtorch had when the step
    /// began, or libtorch's current count outside a step.</summary>
    public static int ProductThreads => productThreads > 0 ? productThreads : torch.get_num_threads();

    /// <summary>Begins a step on this thread; disposing the result ends it and gives libtorch its threads back.
    /// Nested steps, and steps with one thread to begin with, change nothing.</summary>
    public static Step Begin()
    {
        if (productThreads > 0) return default;
        int threads = torch.get_num_threads();
        if (threads <= 1) return default;
        torch.set_num_threads(1);
        productThreads = threads;
        return new Step(threads);
    }

    /// <summary>A decode step in progress on the thread that began it (default: nothing to end).</summary>
    public readonly struct Step : IDisposable
    {
        readonly int threads;

        internal Step(int threads) => this.threads = threads;

        /// <summary>Gives libtorch back the threads it had when the step began.</summary>
        public void Dispose()
        {
            if (threads == 0) return;
            productThreads = 0;
            torch.set_num_threads(threads);
        }
    }
}
