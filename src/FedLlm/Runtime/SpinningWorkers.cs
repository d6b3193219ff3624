using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace FedLlm.Runtime;

/// <summary>
/// A few threads that run one short job together with the calling thread and then wait for the next one by spinning
/// for a moment before they sleep: the fork and join of a decode step's products, which come every few microseconds
/// while a token is decoded and not at all in between.
/// </summary>
/// <remarks>
/// libtorch's OpenMP threads sleep between parallel regions (<see cref="OpenMpPolicy"/>), and waking one costs tens of
/// microseconds on a virtual machine: a decode step makes a few hundred small products per token, so the waking took as
/// long as the products themselves. Spinning for good (OMP_WAIT_POLICY=ACTIVE) would starve other processes on a
/// shared machine; these threads spin only for <see cref="SpinTime"/> after each job, so they cost nothing once decoding
/// stops. One job at a time: a caller that finds the workers busy (another thread decoding) runs its job alone.
/// </remarks>
public static class SpinningWorkers
{
    /// <summary>How long a worker keeps looking for the next job before it sleeps: longer than the gap between two
    /// products of one decode step (a few small ops), far shorter than anything a person or another process would
    /// notice.</summary>
    public static readonly TimeSpan SpinTime = TimeSpan.FromMicroseconds(200);

    static readonly long SpinTicks = (long)(SpinTime.TotalSeconds * Stopwatch.Frequency);

    /// <summary>Work split into parts: <see cref="Run"/> is called once for every part index in [0, parts).</summary>
    public interface IJob
    {
        /// <summary>Does part <paramref name="part"/> of <paramref name="parts"/>; parts run at the same time on
        /// different threads.</summary>
        void Run(int part, int parts);
    }

    static int busy;
    static Worker[] workers = [];

    /// <summary>Runs <paramref name="job"/>'s <paramref name="parts"/> parts, part 0 on the calling thread and the
    /// others on workers, and returns when all are done; an exception from any part is rethrown here.</summary>
    public static void Run(IJob job, int parts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        // Not a lock: a lock would let a part that itself calls Run re-enter and post to workers still busy with it.
        if (parts == 1 || Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            for (int part = 0; part < parts; part++) job.Run(part, parts);
            return;
        }
        try
        {
            if (workers.Length < parts - 1) workers = Grow(workers, parts - 1);
            for (int i = 0; i < parts - 1; i++) workers[i].Post(job, i + 1, parts);
            Exception? failure = null;
            try { job.Run(0, parts); }
            catch (Exception e) { failure = e; }
            for (int i = 0; i < parts - 1; i++)
            {
                var workerFailure = workers[i].Join();
                failure ??= workerFailure;
            }
            if (failure is not null) ExceptionDispatchInfo.Capture(failure).Throw();
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    static Worker[] Grow(Worker[] current, int count)
    {
        var grown = new Worker[count];
        current.CopyTo(grown, 0);
        for (int i = current.Length; i < count; i++) grown[i] = new Worker(i + 1);
        return grown;
    }

    /// <summary>One thread and its mailbox. The poster writes the job, then bumps <see cref="posted"/>; the worker
    /// runs it and bumps <see cref="done"/>. Both counters only grow, so neither side can mistake an old job for a new
    /// one.</summary>
    sealed class Worker
    {
        readonly object sleep = new();
        IJob? job;
        int part, parts;
        Exception? failure;
        long posted, done;
        int sleeping;

        public Worker(int index)
        {
            var thread = new Thread(Loop) { IsBackground = true, Name = $"FedLlm spinning worker {index}" };
            thread.Start();
        }

        public void Post(IJob job, int part, int parts)
        {
            this.job = job;
            this.part = part;
            this.parts = parts;
            failure = null;
            Interlocked.Increment(ref posted);              // a full fence: the job's fields are visible first
            if (Volatile.Read(ref sleeping) != 0)
                lock (sleep) Monitor.Pulse(sleep);
        }

        /// <summary>Waits until the posted job is done; its exception, if any.</summary>
        /// <remarks>The caller arrives here when its own part is done, so the worker's is nearly done too: the wait
        /// spins without yielding for <see cref="SpinTime"/>, because a yield is a system call, and on a virtual
        /// machine one costs more than the rest of the wait; after that it yields, for a worker the system has
        /// paused.</remarks>
        public Exception? Join()
        {
            long target = Volatile.Read(ref posted);
            if (Volatile.Read(ref done) != target)
            {
                long deadline = Stopwatch.GetTimestamp() + SpinTicks;
                while (Volatile.Read(ref done) != target && Stopwatch.GetTimestamp() < deadline) Thread.SpinWait(20);
                var spinner = new SpinWait();
                while (Volatile.Read(ref done) != target) spinner.SpinOnce(sleep1Threshold: -1);
            }
            var result = failure;
            job = null;
            return result;
        }

        void Loop()
        {
            long seen = 0;
            while (true)
            {
                WaitForPost(seen);
                seen = Volatile.Read(ref posted);
                try { job!.Run(part, parts); }
                catch (Exception e) { failure = e; }
                Volatile.Write(ref done, seen);
            }
        }

        void WaitForPost(long seen)
        {
            long deadline = Stopwatch.GetTimestamp() + SpinTicks;
            while (Volatile.Read(ref posted) == seen)
            {
                if (Stopwatch.GetTimestamp() < deadline)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                lock (sleep)
                {
                    Interlocked.Exchange(ref sleeping, 1);  // a full fence: the poster sees it, or this sees the post
                    if (Volatile.Read(ref posted) == seen) Monitor.Wait(sleep);
                    Volatile.Write(ref sleeping, 0);
                }
                deadline = Stopwatch.GetTimestamp() + SpinTicks;
            }
        }
    }
}
