using System.Collections.Concurrent;
using FedLlm.Runtime;

namespace FedLlm.Tests.Runtime;

/// <summary><see cref="SpinningWorkers"/>: every part once, on threads of their own, failures passed on. Alone, because
/// a decode in a parallel test would hold the workers and this test's parts would run on the caller.</summary>
[Collection(RunsAloneCollection.Name)]
public class SpinningWorkersTests
{
    sealed class RecordingJob(Func<int, bool>? fail = null) : SpinningWorkers.IJob
    {
        public readonly ConcurrentDictionary<int, int> ThreadOfPart = new();
        public int Calls;

        public void Run(int part, int parts)
        {
            Interlocked.Increment(ref Calls);
            ThreadOfPart[part] = Environment.CurrentManagedThreadId;
            Thread.SpinWait(1000);   // long enough that parts overlap
            if (fail?.Invoke(part) == true) throw new InvalidOperationException($"part {part} failed");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Every_part_runs_once_the_first_on_the_caller_and_the_others_on_threads_of_their_own(int parts)
    {
        // Execute
        var job = new RecordingJob();
        SpinningWorkers.Run(job, parts);

        // Assert
        Assert.Equal(parts, job.Calls);
        Assert.Equal(Enumerable.Range(0, parts), job.ThreadOfPart.Keys.Order());
        Assert.Equal(Environment.CurrentManagedThreadId, job.ThreadOfPart[0]);
        Assert.Equal(parts, job.ThreadOfPart.Values.Distinct().Count());
    }

    [Fact]
    public void A_failing_part_fails_the_run_after_all_parts_ended_and_the_workers_go_on()
    {
        // Execute: part 1 (a worker) fails
        var failing = new RecordingJob(part => part == 1);
        var error = Assert.Throws<InvalidOperationException>(() => SpinningWorkers.Run(failing, 3));

        // Assert: its exception, every part ran, and the next run is served normally
        Assert.Equal("part 1 failed", error.Message);
        Assert.Equal(3, failing.Calls);
        var next = new RecordingJob();
        SpinningWorkers.Run(next, 3);
        Assert.Equal(3, next.Calls);
    }

    [Fact]
    public void A_part_that_runs_a_job_of_its_own_gets_it_done_alone()
    {
        // Execute: part 0 (the caller, holding the workers) starts an inner job of two parts
        var inner = new RecordingJob();
        var outer = new NestingJob(inner);
        SpinningWorkers.Run(outer, 2);

        // Assert: the inner job ran both parts, on the caller's thread, without disturbing the busy worker
        Assert.Equal(2, inner.Calls);
        Assert.Equal(inner.ThreadOfPart[0], inner.ThreadOfPart[1]);
        Assert.Equal(2, outer.Calls);
    }

    sealed class NestingJob(RecordingJob inner) : SpinningWorkers.IJob
    {
        public int Calls;

        public void Run(int part, int parts)
        {
            Interlocked.Increment(ref Calls);
            if (part == 0) SpinningWorkers.Run(inner, 2);
            else Thread.SpinWait(1000);
        }
    }

    [Fact]
    public async Task Workers_that_went_to_sleep_wake_for_the_next_job()
    {
        // Prepare: a first job, then a pause far longer than the spinning
        SpinningWorkers.Run(new RecordingJob(), 2);
        Thread.Sleep(SpinningWorkers.SpinTime * 50 + TimeSpan.FromMilliseconds(20));

        // Execute
        var job = new RecordingJob();
        var run = Task.Run(() => SpinningWorkers.Run(job, 2));

        // Assert: done, and part 1 was not run by the caller
        await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, job.Calls);
        Assert.NotEqual(job.ThreadOfPart[0], job.ThreadOfPart[1]);
    }

    [Fact]
    public async Task Callers_at_the_same_time_all_get_every_part_done()
    {
        // Execute: four threads, 200 runs each; a caller that finds the workers busy runs its parts alone
        var jobs = new ConcurrentBag<RecordingJob>();
        var callers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < 200; i++)
            {
                var job = new RecordingJob();
                SpinningWorkers.Run(job, 2);
                jobs.Add(job);
            }
        })).ToArray();

        // Assert
        await Task.WhenAll(callers).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(800, jobs.Count);
        Assert.All(jobs, job => Assert.Equal(2, job.Calls));
    }
}
