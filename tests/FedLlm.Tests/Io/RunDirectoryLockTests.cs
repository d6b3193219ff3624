using System.Diagnostics;
using FedLlm.Io;
using FedLlm.Runs;

namespace FedLlm.Tests.Io;

/// <summary>One process at a time writes a run directory: a second holder is refused naming the directory and the
/// first holder, a lock dies with its process (kill -9 included), and a federated run pointed at a held output is refused
/// before it writes anything.</summary>
public sealed class RunDirectoryLockTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("fedllm-run-lock-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void A_second_holder_is_refused_naming_the_directory_and_the_first_and_takes_it_once_released()
    {
        string output = Path.Combine(dir, "fedavg");
        var first = RunDirectoryLock.Acquire(output);
        var e = Assert.Throws<IOException>(() => RunDirectoryLock.Acquire(output));
        Assert.Contains(output, e.Message);
        Assert.Contains($"in use by another FedLlm process (its id is in {Path.Combine(output, RunDirectoryLock.FileName)})", e.Message);
        Assert.Equal($"{Environment.ProcessId}", ReadWithoutLocking(Path.Combine(output, RunDirectoryLock.FileName)));
        first.Dispose();
        RunDirectoryLock.Acquire(output).Dispose();
    }

    /// <summary>The file's text as `cat` reads it (no lock asked for).</summary>
    static string ReadWithoutLocking(string path)
    {
        var cat = Process.Start(new ProcessStartInfo("cat", path) { RedirectStandardOutput = true, UseShellExecute = false })!;
        string text = cat.StandardOutput.ReadToEnd().Trim();
        cat.WaitForExit();
        return text;
    }

    [Fact]
    public void A_lock_held_by_a_process_that_is_killed_is_released()
    {
        // flock(2) is what .NET takes for FileShare.None on Unix; a Python child holds it the same way.
        string output = Path.Combine(dir, "server");
        Directory.CreateDirectory(output);
        string path = Path.Combine(output, RunDirectoryLock.FileName);
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"import fcntl, time\nf = open({System.Text.Json.JsonSerializer.Serialize(path)}, 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n");
        using var holder = Process.Start(start)!;
        try
        {
            Assert.Equal("held", holder.StandardOutput.ReadLine());
            Assert.Throws<IOException>(() => RunDirectoryLock.Acquire(output));
        }
        finally
        {
            holder.Kill();
            holder.WaitForExit();
        }
        RunDirectoryLock.Acquire(output).Dispose();
    }

    [Fact]
    public async Task A_federated_run_whose_output_another_process_holds_is_refused_before_it_writes()
    {
        using var tiny = new FedLlm.Tests.Network.TinyFederation(clients: 2, rounds: 1, localSteps: 1);
        var options = new RunOptions
        {
            ModelPath = tiny.ModelDirectory,
            Threads = 1,
            Data = new RunDataOptions { TrainPath = tiny.DataFiles[1], Partition = new() { Kind = FedLlm.Data.Partitioning.PartitionKind.Iid } },
            Federation = tiny.Federation.ToOptions(),
            Lora = tiny.Lora,
            Output = tiny.Output,
        };
        string output = Path.Combine(tiny.Output, "fedavg");
        using var run = FederatedRun.Prepare(options);
        using (RunDirectoryLock.Acquire(output))
        {
            var e = await Assert.ThrowsAsync<IOException>(() => run.RunAsync("fedavg"));
            Assert.Contains("in use by another FedLlm process", e.Message);
            Assert.Equal([RunDirectoryLock.FileName], Directory.GetFileSystemEntries(output).Select(Path.GetFileName));
        }
        await run.RunAsync("fedavg");
        Assert.True(File.Exists(Path.Combine(output, "metrics.jsonl")));
    }

    [Fact]
    public void A_client_whose_state_dir_another_process_holds_exits_2_naming_it_before_connecting()
    {
        using var tiny = new FedLlm.Tests.Network.TinyFederation(clients: 1, rounds: 1, localSteps: 1);
        string stateDir = Path.Combine(tiny.Root, "state", "client-0");
        using (RunDirectoryLock.Acquire(stateDir))
        {
            // Nothing listens at this address: the client must stop on the lock before it tries to connect.
            using var client = tiny.StartClient(0, "http://127.0.0.1:9");
            Assert.Equal(2, client.WaitForExit(TimeSpan.FromSeconds(60)));
            Assert.Contains($"{stateDir} is in use by another FedLlm process", client.Log);
        }
    }
}
