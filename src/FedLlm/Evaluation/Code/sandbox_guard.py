"""FedLlm's wrapper around one untrusted program (a model's code completion plus its tests).

Run as: python3 -I -B sandbox_guard.py PROGRAM MEMORY_MB CPU_SECONDS FILE_MB, in a fresh temporary directory, by
PythonSandbox.cs. It sets resource limits on its own process before the program runs, then disables the destructive
functions that human-eval's reliability_guard disables (openai/human-eval, human_eval/execution.py), then executes
the program with its output swallowed. Like reliability_guard, this is not a security sandbox: it stops accidents
(fork bombs, memory bombs, deleting files, endless loops), not an adversary.

Outcome, read by the parent:
  exit 0 and the pass token on stdout  -> every statement ran without an exception (the tests passed)
  exit 1 and a traceback on stderr     -> the program raised (a failed assert, a syntax error, MemoryError, SystemExit...)
  anything else                        -> killed by a limit or the interpreter broke
The token comes from the environment and is removed before the program runs, so a program that ends the process
early with os._exit(0) cannot fake a pass.
"""
import faulthandler
import io
import os
import sys
import traceback


class _Discard(io.TextIOBase):
    """Write-only sink: the program's prints cost nothing and cannot fill memory."""

    def writable(self):
        return True

    def write(self, s):
        return len(s)

    def readable(self):
        return False


def _set_limits(memory_mb, cpu_seconds, file_mb):
    import resource

    def limit(name, value):
        what = getattr(resource, name, None)
        if what is None:
            return
        try:
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError):
            # Some limits cannot be lowered in some containers; the others still apply.
            pass

    memory = memory_mb * 1024 * 1024
    limit("RLIMIT_AS", memory)
    limit("RLIMIT_DATA", memory)
    limit("RLIMIT_CPU", cpu_seconds)
    limit("RLIMIT_FSIZE", file_mb * 1024 * 1024)
    limit("RLIMIT_CORE", 0)
    # No new processes or threads: the program needs neither, and this stops fork bombs (not enforced for root,
    # which is why os.fork and subprocess are also disabled below).
    limit("RLIMIT_NPROC", 0)


def _disable_destructive_functions():
    # The list of human-eval's reliability_guard.
    faulthandler.disable()
    import builtins
    builtins.exit = None
    builtins.quit = None
    builtins.help = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir", "execv", "execve", "execvp", "execl",
                 "spawnv", "spawnl", "popen", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            setattr(os, name, None)
    import shutil
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    import subprocess
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def main():
    program_path = sys.argv[1]
    memory_mb, cpu_seconds, file_mb = (int(v) for v in sys.argv[2:5])
    token = os.environ.pop("FEDLLM_PASS_TOKEN", "")
    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    real_stdout, real_stderr = sys.stdout, sys.stderr
    exit_now = os._exit
    _set_limits(memory_mb, cpu_seconds, file_mb)
    try:
        code = compile(source, "program.py", "exec")
        _disable_destructive_functions()
        sink = _Discard()
        sys.stdout, sys.stderr, sys.stdin = sink, sink, io.StringIO()
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException:
        sys.stdout, sys.stderr = real_stdout, real_stderr
        try:
            real_stderr.write(traceback.format_exc())
            real_stderr.flush()
        finally:
            exit_now(1)
    real_stdout.write(token + "\n")
    real_stdout.flush()
    exit_now(0)


main()
