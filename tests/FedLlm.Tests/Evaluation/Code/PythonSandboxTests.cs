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
            "assert sorted(os.environ) == ['HOME', 'LANG', 'OMP_NUM_THREADS', 'PATH', 'TMPDIR'], sorted(os.environ)\n");
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
}
