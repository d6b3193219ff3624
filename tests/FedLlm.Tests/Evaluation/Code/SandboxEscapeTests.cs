using System.Net;
using System.Net.Sockets;
using FedLlm.Evaluation.Code;

namespace FedLlm.Tests.Evaluation.Code;

/// <summary>
/// Escapes a hostile completion might try. Each runs through <see cref="PythonSandbox"/> (guard and sandbox) and must
/// not pass; where the guard would stop the attempt first, the same attempt also runs without the guard
/// (<see cref="RawSandboxRun"/>) to show the kernel-level sandbox stops it too. Every program ends in a way that would
/// count as a pass, or leave a trace on the host, if the defence it probes were missing.
/// </summary>
public class SandboxEscapeTests
{
    private static readonly PythonSandbox Sandbox = new(new SandboxOptions { Timeout = TimeSpan.FromSeconds(10), MemoryMegabytes = 256, Workers = 2 });
    private static readonly TimeSpan RawTimeout = TimeSpan.FromSeconds(20);

    // The host's /tmp itself (not TMPDIR, which test.sh points at a subdirectory): the sandbox mounts its own /tmp
    // over it, so a write there must land in the sandbox's copy and never on the host.
    private static string HostMarker() => $"/tmp/fedllm-escape-{Guid.NewGuid():N}";

    private static void AssertNotPassed(ExecutionResult result) =>
        Assert.True(result.Status != ExecutionStatus.Passed, $"an escape counted as passed; stderr: {result.StderrTail}");

    [Fact]
    public void Shell_commands_through_posix_or_ctypes_do_not_pass_and_leave_nothing_on_the_host()
    {
        var marker = HostMarker();
        var results = Sandbox.RunAll([
            $"import posix\nposix.system('touch {marker}')\n",
            $"import ctypes\nctypes.CDLL(None).system(b'touch {marker}')\n",
        ]);
        Assert.All(results, AssertNotPassed);
        Assert.Contains("blocked by the sandbox guard: os.system", results[0].StderrTail);
        Assert.Contains("blocked by the sandbox guard: import ctypes", results[1].StderrTail);

        // Without the guard, system() cannot even fork, and the sandbox's /tmp is not the host's.
        var raw = RawSandboxRun.Run(Sandbox, $"import ctypes, posix\nprint(posix.system('touch {marker}'), ctypes.CDLL(None).system(b'touch {marker}'))", RawTimeout);
        Assert.Equal(0, raw.ExitCode);
        Assert.DoesNotContain("0 0", raw.Stdout);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void Fork_bombs_are_refused_by_the_guard_and_by_the_kernel()
    {
        var result = Sandbox.Run("import posix\nfor _ in range(30):\n    posix.fork()\n");
        AssertNotPassed(result);
        Assert.InRange(result.Elapsed.TotalSeconds, 0, 9);

        // The kernel's own limit: not a single fork, though the sandbox's user id is root's when FedLlm runs as root.
        var raw = RawSandboxRun.Run(Sandbox, """
            import os
            forks = 0
            try:
                while forks < 30:
                    if os.fork() == 0:
                        os._exit(0)
                    forks += 1
            except OSError as e:
                print('refused after', forks, 'errno', e.errno)
            """, RawTimeout);
        Assert.Contains("refused after 0 errno 11", raw.Stdout);
    }

    [Fact]
    public void Double_forked_daemons_do_not_outlive_the_run()
    {
        var marker = $"fedllm-daemon-{Guid.NewGuid():N}";
        var daemon = $$"""
            import os, time
            try:
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)  # {{marker}}'])
                    os._exit(0)
                time.sleep(1)
                print('daemon started')
            except OSError as e:
                print('fork refused', e.errno)
            """;
        AssertNotPassed(Sandbox.Run(daemon.Replace("import os, time", "import posix as os, time")));
        Assert.Contains("fork refused", RawSandboxRun.Run(Sandbox, daemon, RawTimeout).Stdout);

        // With forks allowed, the PID namespace still takes the daemon down with the program, when it exits and when
        // it is killed at a timeout.
        var exits = RunWithProcessLimit(daemon, 16, RawTimeout);
        Assert.Contains("daemon started", exits.Stdout);
        var killed = RunWithProcessLimit(daemon + "\nprint('waiting', flush=True)\ntime.sleep(60)\n", 16, TimeSpan.FromSeconds(4));
        Assert.True(killed.TimedOut);
        Thread.Sleep(500);
        Assert.Empty(RawSandboxRun.ProcessesWithMarker(marker));
    }

    [Fact]
    public void The_network_is_unreachable()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var connect = $"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'hello')\n";
        var result = Sandbox.Run(connect);
        AssertNotPassed(result);
        Assert.Contains("blocked by the sandbox guard: socket", result.StderrTail);

        var raw = RawSandboxRun.Run(Sandbox, connect, RawTimeout);
        Assert.NotEqual(0, raw.ExitCode);
        Assert.Contains("ConnectionRefusedError", raw.Stderr);
        Assert.False(listener.Pending());
    }

    [Fact]
    public void Host_files_and_fedllms_environment_cannot_be_read()
    {
        var secretFile = HostMarker();
        var secret = $"secret-{Guid.NewGuid():N}";
        File.WriteAllText(secretFile, secret);
        Environment.SetEnvironmentVariable("FEDLLM_TEST_JUDGE_KEY", secret);
        try
        {
            var raw = RawSandboxRun.Run(Sandbox, $$"""
                import os
                print(sorted(os.listdir('/')))
                print(dict(os.environ))
                for path in ['{{secretFile}}', '/proc/1/environ', '/proc/{{Environment.ProcessId}}/environ', '/proc/self/environ',
                             '/etc/passwd', '/root', '{{AppContext.BaseDirectory}}']:
                    try:
                        print(path, open(path, 'rb').read())
                    except OSError as e:
                        print(path, 'refused', type(e).__name__)
                """, RawTimeout);
            Assert.Equal(0, raw.ExitCode);
            Assert.DoesNotContain(secret, raw.Stdout);
            // Only the read-only system folders and the private /tmp; no /proc, /home, /root, /work, /etc beyond two files.
            Assert.StartsWith("['bin', 'dev', 'etc', 'lib', 'lib64', ", raw.Stdout);
            Assert.DoesNotContain("'proc'", raw.Stdout.Split('\n')[0]);
            Assert.Equal(7, raw.Stdout.Split('\n').Count(l => l.Contains(" refused ", StringComparison.Ordinal)));
        }
        finally
        {
            Environment.SetEnvironmentVariable("FEDLLM_TEST_JUDGE_KEY", null);
            File.Delete(secretFile);
        }
    }

    [Fact]
    public void Writes_outside_the_private_tmp_do_not_reach_the_host()
    {
        var inHostTemp = HostMarker();
        var elsewhere = Path.Combine(AppContext.BaseDirectory, $"fedllm-escape-{Guid.NewGuid():N}");
        var raw = RawSandboxRun.Run(Sandbox, $$"""
            for path in ['{{inHostTemp}}', '{{elsewhere}}', '/usr/fedllm-escape', '/fedllm-escape', '/dev/fedllm-escape']:
                try:
                    open(path, 'w').write('x')
                    print(path, 'written')
                except OSError as e:
                    print(path, 'refused', type(e).__name__)
            """, RawTimeout);
        // The host temp path lands in the sandbox's own /tmp, which vanishes with it; every other path is refused.
        Assert.Contains($"{inHostTemp} written", raw.Stdout);
        Assert.Equal(4, raw.Stdout.Split('\n').Count(l => l.Contains(" refused ", StringComparison.Ordinal)));
        Assert.False(File.Exists(inHostTemp));
        Assert.False(File.Exists(elsewhere));
    }

    [Fact]
    public void The_pass_token_cannot_be_found_in_stdin_environment_or_frames()
    {
        // Collects every 32-hex-digit string it can reach and writes each to every descriptor, then ends "successfully".
        var result = Sandbox.Run("""
            import os, re, sys
            found = set()
            pattern = re.compile('[0-9A-F]{32}')
            def scan(value):
                text = value.decode('latin-1') if isinstance(value, (bytes, bytearray)) else value if isinstance(value, str) else repr(value)
                found.update(pattern.findall(text))
            scan(os.read(0, 4096))
            scan(repr(dict(os.environ)))
            for path in ('/proc/self/environ', '/proc/self/cmdline', '/proc/self/mem'):
                try:
                    scan(open(path, 'rb').read(1 << 16))
                except OSError:
                    pass
            frame = sys._getframe()
            while frame is not None:
                for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
                    scan(value)
                    for cell in getattr(value, '__closure__', None) or ():
                        try:
                            scan(cell.cell_contents)
                        except ValueError:
                            pass
                frame = frame.f_back
            for token in found:
                for fd in range(1, 64):
                    try:
                        os.write(fd, (token + '\n').encode())
                    except OSError:
                        pass
            os._exit(0)
            """);
        Assert.Equal(ExecutionStatus.Failed, result.Status);
    }

    [Fact]
    public void Object_graph_tracing_and_forged_verdicts_end_as_failures()
    {
        var results = Sandbox.RunAll([
            "import gc\nfor o in gc.get_objects():\n    pass\n",
            "import gc, sys\ngc.get_referrers(sys._getframe())\n",
            "import sys\nsys.settrace(lambda *a: None)\n",
            "import sys\nsys.addaudithook(lambda *a: None)\n",
            "import sys\nsys.audit('fedllm.tests_completed')\n",
            // Running the guard's main again would arm a second hook, if its limits could be set again.
            "import sys\nsys.modules['__main__'].main()\n",
            "import sys, os\nsys.__stdout__.write('0' * 32 + '\\n')\nsys.__stdout__.flush()\nprint('0' * 32)\nos.write(1, b'0' * 32 + b'\\n')\nos._exit(0)\n",
            "import os\nfor fd in range(256):\n    try:\n        os.write(fd, b'0' * 32 + b'\\n')\n    except OSError:\n        pass\nos._exit(0)\n",
            "import os\nos._exit(0)\nassert False\n",
            "import posix\nposix.kill(posix.getppid(), 9)\n",
        ]);
        Assert.All(results, r => Assert.Equal(ExecutionStatus.Failed, r.Status));
        Assert.Contains("blocked by the sandbox guard: gc.get_objects", results[0].StderrTail);
        Assert.Contains("blocked by the sandbox guard: gc.get_referrers", results[1].StderrTail);
        Assert.Contains("blocked by the sandbox guard: sys.settrace", results[2].StderrTail);
        Assert.Contains("blocked by the sandbox guard: sys.addaudithook", results[3].StderrTail);
        Assert.Contains("forged end-of-tests event", results[4].StderrTail);
        Assert.Contains("blocked by the sandbox guard: os.kill", results[9].StderrTail);
    }

    [Fact]
    public void Killing_the_parent_reaches_only_the_sandboxs_own_init()
    {
        var raw = RawSandboxRun.Run(Sandbox, """
            import os, signal
            print('parent', os.getppid())
            os.kill(os.getppid(), signal.SIGKILL)
            try:
                os.kill(-1, signal.SIGKILL)  # every process this one may signal: none outside the sandbox
            except ProcessLookupError:
                pass
            print('still here')
            """, RawTimeout);
        Assert.Contains("parent 1", raw.Stdout);
        Assert.Contains("still here", raw.Stdout);
        // And the sandbox still works for the next program.
        Assert.Equal(ExecutionStatus.Passed, Sandbox.Run("assert 1 + 1 == 2").Status);
    }

    [Fact]
    public void Limits_hold_without_the_guard()
    {
        var raw = RawSandboxRun.Run(Sandbox, """
            import resource
            for name in ('RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_CPU'):
                print(name, resource.getrlimit(getattr(resource, name)))
            try:
                bytearray(1024 ** 3)
            except MemoryError:
                print('MemoryError')
            """, RawTimeout);
        Assert.Contains("RLIMIT_NPROC (0, 0)", raw.Stdout);
        Assert.Contains($"RLIMIT_AS ({256L << 20}, {256L << 20})", raw.Stdout);
        Assert.Contains($"RLIMIT_FSIZE ({16L << 20}, {16L << 20})", raw.Stdout);
        Assert.Contains("RLIMIT_CPU (11, 11)", raw.Stdout);
        Assert.Contains("MemoryError", raw.Stdout);
    }

    private static RawSandboxRun.Outcome RunWithProcessLimit(string code, int processes, TimeSpan timeout)
    {
        // The same sandbox with forks allowed: isolates the PID namespace's clean-up from the process limit.
        var start = Sandbox.Launcher.StartInfo(["-I", "-c", code]);
        var index = start.ArgumentList.IndexOf("--nproc=0");
        Assert.True(index > 0);
        start.ArgumentList[index] = $"--nproc={processes}";
        using var process = System.Diagnostics.Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var exited = process.WaitForExit(timeout);
        if (!exited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        stdout.Wait(TimeSpan.FromSeconds(5));
        return new RawSandboxRun.Outcome(process.ExitCode, stdout.IsCompletedSuccessfully ? stdout.Result : "", "", !exited);
    }
}
