using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;

namespace FedLlm.Runtime;

/// <summary>
/// The threads of one decode step whose products all run on FedLlm's own kernels: libtorch's ops (norms, attention,
/// rotary, sampling) on the calling thread alone, and the products on as many threads as libtorch had
/// (<see cref="ProductThreads"/>).
/// </summary>
/// <remarks>
/// <para>The ops of a decode step around its products are tiny, but some of them (attention, a vocabulary-wide argmax)
/// still open an OpenMP parallel region, which wakes libtorch's sleeping OpenMP thread on the core where
/// <see cref="SpinningWorkers"/>' worker spins for the next product; the two then take turns on that core
/// (`FedLlm.Bench decode-fedllm fp32 1`, bench/README.md).</para>
/// <para>Only the calling thread's settings change: OpenMP's thread count (<c>omp_set_num_threads</c>, a per-thread
/// setting) and MKL's thread-local count, set through libtorch's own OpenMP and MKL. Not
/// <c>torch.set_num_threads</c>: libtorch also stores that count process-wide, and a thread that first used libtorch
/// during the step would keep one thread for good. Where those entry points cannot be found (another libtorch build),
/// nothing changes.</para>
/// </remarks>
public static unsafe class DecodeThreading
{
    [ThreadStatic] static int productThreads;

    static readonly Lazy<(nint SetOpenMpThreads, nint SetMklLocalThreads)> entryPoints = new(FindEntryPoints);

    /// <summary>The threads FedLlm's decode products share on this thread: the count libtorch had when the step
    /// began, or libtorch's current count outside a step.</summary>
    public static int ProductThreads => productThreads > 0 ? productThreads : torch.get_num_threads();

    /// <summary>Whether a step can change the calling thread's OpenMP thread count in this process.</summary>
    public static bool Available
    {
        get
        {
            torch.get_num_threads();   // libtorch, and with it OpenMP, is loaded first
            return entryPoints.Value.SetOpenMpThreads != 0;
        }
    }

    /// <summary>Whether MKL's thread-local count is found too (libtorch builds with MKL).</summary>
    internal static bool SetsMklThreads => Available && entryPoints.Value.SetMklLocalThreads != 0;

    /// <summary>Begins a step on this thread; disposing the result ends it and gives libtorch its threads back.
    /// Nested steps, steps with one thread to begin with, and processes without the entry points change
    /// nothing.</summary>
    public static Step Begin()
    {
        if (productThreads > 0) return default;
        int threads = torch.get_num_threads();
        if (threads <= 1) return default;
        var (setOpenMp, setMklLocal) = entryPoints.Value;
        if (setOpenMp == 0) return default;
        ((delegate* unmanaged<int, void>)setOpenMp)(1);
        int mklBefore = setMklLocal != 0 ? ((delegate* unmanaged<int, int>)setMklLocal)(1) : 0;
        productThreads = threads;
        return new Step(threads, mklBefore);
    }

    /// <summary>A decode step in progress on the thread that began it (default: nothing to end).</summary>
    public readonly struct Step : IDisposable
    {
        readonly int threads, mklBefore;

        internal Step(int threads, int mklBefore)
        {
            this.threads = threads;
            this.mklBefore = mklBefore;
        }

        /// <summary>Gives libtorch back the threads it had when the step began.</summary>
        public void Dispose()
        {
            if (threads == 0) return;
            productThreads = 0;
            var (setOpenMp, setMklLocal) = entryPoints.Value;
            ((delegate* unmanaged<int, void>)setOpenMp)(threads);
            if (setMklLocal != 0) ((delegate* unmanaged<int, int>)setMklLocal)(mklBefore);
        }
    }

    /// <summary>omp_set_num_threads of the OpenMP runtime libtorch loaded (libgomp, under a build-specific name) and
    /// mkl_set_num_threads_local of libtorch's MKL (C name MKL_Set_Num_Threads_Local), or 0 where absent.</summary>
    static (nint, nint) FindEntryPoints()
    {
        nint openMp = 0, mkl = 0;
        try
        {
            foreach (ProcessModule module in Process.GetCurrentProcess().Modules)
            {
                string name = Path.GetFileName(module.FileName);
                if (openMp == 0 && name.StartsWith("libgomp", StringComparison.Ordinal))
                    openMp = Export(module.FileName, "omp_set_num_threads");
                else if (mkl == 0 && name.StartsWith("libtorch_cpu", StringComparison.Ordinal))
                    mkl = Export(module.FileName, "MKL_Set_Num_Threads_Local");   // mkl_service.h's C entry; the lower-case name is Fortran's, by reference
            }
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return (0, 0);
        }
        return (openMp, mkl);
    }

    static nint Export(string path, string symbol) =>
        NativeLibrary.TryLoad(path, out var library) && NativeLibrary.TryGetExport(library, symbol, out var address) ? address : 0;
}
