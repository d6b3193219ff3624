using FedLlm.Evaluation.Code;

namespace FedLlm.Tests.Evaluation.Code;

/// <summary>
/// Each test starts real python3 processes with millisecond programs. The timeout is generous (an upper bound that a
/// loaded CI machine must not hit) except in the test of the timeout itself.
/// </summary>
public class PythonSandboxTests
{
    private static readonly PythonSandbox Sandbox = new(new SandboxOptions { Timeout = TimeSpan.FromSeconds(10), MemoryMegabytes = 256, Workers = 2 });

    [Fact]
    public void Passing_failing_and_exiting_programs_are_told_apart()
    {
        var results = Sandbox.RunAll([
            "assert 1 + 1 == 2",
            "assert 1 + 1 == 3, 'arithmetic'",
            "def f(:\n  pass",
            // Ending the process early with exit code 0 must not count as a pass: the tests after it never ran.
            "import os\nos._exit(0)\nassert False",
            "import sys\nsys.exit(0)",
        ]);
        Assert.Equal(ExecutionStatus.Passed, results[0].Status);
        Assert.Equal(ExecutionStatus.Failed, results[1].Status);
        Assert.Contains("AssertionError: arithmetic", results[1].StderrTail);
        Assert.Equal(ExecutionStatus.Failed, results[2].Status);
        Assert.Contains("SyntaxError", results[2].StderrTail);
        Assert.Equal(ExecutionStatus.Failed, results[3].Status);
        Assert.Equal(ExecutionStatus.Failed, results[4].Status);
    }

    [Fact]
    public void An_infinite_loop_is_killed_at_the_timeout()
    {
        var sandbox = new PythonSandbox(Sandbox.Options with { Timeout = TimeSpan.FromSeconds(1) });
        var result = sandbox.Run("while True:\n    pass");
        Assert.Equal(ExecutionStatus.TimedOut, result.Status);
        Assert.InRange(result.Elapsed.TotalSeconds, 0.9, 5);
    }

    [Fact]
    public void A_memory_bomb_fails_inside_its_own_limit()
    {
        // 8 GiB at once: over the 256 MiB address-space limit, so Python raises MemoryError in the child, which
        // reports it as an ordinary failure (the allocation never happens, in the child or here).
        var result = Sandbox.Run("x = bytearray(8 * 1024 ** 3)\nassert len(x) > 0");
        Assert.Equal(ExecutionStatus.Failed, result.Status);
        Assert.Contains("MemoryError", result.StderrTail);
        // A bomb that grows step by step hits the same limit.
        var growing = Sandbox.Run("chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 ** 2))");
        Assert.Equal(ExecutionStatus.Failed, growing.Status);
        Assert.Contains("MemoryError", growing.StderrTail);
    }

    [Fact]
    public void Destructive_functions_are_disabled()
    {
        var results = Sandbox.RunAll([
            "import os\nos.system('echo hi')",
            "import subprocess\nsubprocess.run(['true'])",
            "import os\nos.fork()",
            "import shutil\nshutil.rmtree('/tmp/nothing-here')",
        ]);
        Assert.All(results, r => Assert.Equal(ExecutionStatus.Failed, r.Status));
        Assert.All(results, r => Assert.Contains("TypeError: 'NoneType' object is not callable", r.StderrTail));
    }

    [Fact]
    public void A_program_that_writes_files_writes_into_the_sandboxs_private_tmp()
    {
        var marker = $"fedllm-sandbox-{Guid.NewGuid():N}.txt";
        var result = Sandbox.Run(
            $"import os\nopen('{marker}', 'w').write('x')\nassert os.path.exists('/tmp/{marker}')\n" +
            // The working directory is the sandbox's own /tmp, and the environment is the minimal one.
            "assert os.environ.get('HOME') == '/tmp'\n" +
            "assert sorted(os.environ) == ['HOME', 'LANG', 'OMP_NUM_THREADS', 'PATH', 'PWD', 'TMPDIR'], sorted(os.environ)\n");
        Assert.Equal(ExecutionStatus.Passed, result.Status);
        Assert.False(File.Exists(Path.Combine(Environment.CurrentDirectory, marker)));
        Assert.False(File.Exists(Path.Combine(Path.GetTempPath(), marker)));
        Assert.False(File.Exists(Path.Combine("/tmp", marker)));
    }

    [Fact]
    public void A_missing_interpreter_is_a_clear_error()
    {
        var sandbox = new PythonSandbox(new SandboxOptions { PythonPath = "/nonexistent/python3" });
        var error = Assert.Throws<InvalidOperationException>(() => sandbox.Run("pass"));
        Assert.Contains("/nonexistent/python3", error.Message);
        Assert.Contains("python=", error.Message);
    }

    [Fact]
    public void A_user_namespace_failure_is_explained_as_such()
    {
        var message = SandboxLauncher.ExplainProbeFailure("/usr/bin/python3", 1,
            "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces.");
        Assert.Contains("user namespace", message);
        Assert.Contains("user.max_user_namespaces", message);
        Assert.Contains("--unsafe-code-execution", message);
        Assert.DoesNotContain("user namespace", SandboxLauncher.ExplainProbeFailure("/opt/python3", 1, "python3: not found"));
    }

    [Fact]
    public void The_explicit_opt_out_runs_without_the_os_sandbox()
    {
        var unsafeSandbox = new PythonSandbox(Sandbox.Options with { UnsafeCodeExecution = true });
        Assert.False(unsafeSandbox.Launcher.IsIsolated);
        Assert.True(Sandbox.Launcher.IsIsolated);
        // The guard still gives the verdict: a pass, a failure, and an early exit that is not a pass.
        var results = unsafeSandbox.RunAll(["assert 1 + 1 == 2", "assert 1 + 1 == 3", "import os\nos._exit(0)"]);
        Assert.Equal([ExecutionStatus.Passed, ExecutionStatus.Failed, ExecutionStatus.Failed], results.Select(r => r.Status));
        // Outside the sandbox the host's /proc is visible; inside there is none.
        Assert.Equal(ExecutionStatus.Passed, unsafeSandbox.Run("import os\nassert os.path.isdir('/proc')").Status);
        Assert.Equal(ExecutionStatus.Failed, Sandbox.Run("import os\nassert os.path.isdir('/proc')").Status);
    }
}
