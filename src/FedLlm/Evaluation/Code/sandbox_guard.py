"""FedLlm's wrapper around one untrusted program (a model's code completion plus its tests).

Run by PythonSandbox.cs as: python3 -I -B -c <this file> MEMORY_MB CPU_SECONDS FILE_MB, normally inside a bubblewrap
sandbox (see docs/code-sandbox.md). Standard input carries one line with the pass token, then the program's source.

The isolation (no network, no host files, no other processes, limits that hold for every process) comes from the
sandbox around this interpreter, not from this file. This file only has to produce an honest verdict:
  exit 0 and exactly the pass token on stdout -> the program and its tests ran to the end without an exception
  exit 1 and a message on stderr              -> the program raised, or tried something this guard refuses
  anything else                               -> killed by a limit, or the interpreter broke

Why the token is hard to forge (and where that stops): the token never appears in the environment or in a file; it
is read from stdin, which is then replaced by /dev/null, and kept only in the closure of an audit hook (PEP 578) that
no live frame references. The hook writes it on a duplicate of the original stdout, whose fd 1 now points at
/dev/null, and only when the event announcing the end of the tests comes from the guard's own frame. Routes to the
hook's closure or to process memory end the program as failed: gc's object walks, ctypes, tracing and profiling
hooks, new code objects, new audit hooks. /proc is not mounted in the sandbox, so /proc/self/mem is not there either.
CPython is not designed to confine code it runs, so this is best effort: a program can still make its tests pass
vacuously (an object equal to everything), and memory corruption through crafted bytecode is not ruled out. A forged
pass changes only that sample's score; it gives no access to the host.
"""
import faulthandler
import io
import os
import sys
import traceback

_TESTS_COMPLETED = "fedllm.tests_completed"

# Audit events that end the program: each is a way to the token (object graph, frames of running hooks, memory)
# or to processes and sockets the sandbox already stops, refused here too for runs without the sandbox.
_REFUSED_EVENTS = frozenset({
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "sys.monitoring.register_callback", "code.__new__",
    "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "resource.setrlimit", "resource.prlimit",
    "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
})
_REFUSED_EVENT_PREFIXES = ("ctypes.", "fedllm.")
_REFUSED_IMPORTS = frozenset({"ctypes", "_ctypes"})


class _Discard(io.TextIOBase):
    """Write-only sink: the program's prints cost nothing and cannot fill memory."""

    def writable(self):
        return True

    def write(self, s):
        return len(s)

    def readable(self):
        return False


def _set_limits(memory_mb, cpu_seconds, file_mb):
    # The sandbox already starts the interpreter under these limits (prlimit); setting them here keeps them for a run
    # without the sandbox (--unsafe-code-execution).
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
    # No new processes or threads: the program needs neither. The kernel ignores this limit for real root, which
    # is why the sandbox runs the program under an unprivileged user id.
    limit("RLIMIT_NPROC", 0)


def _disable_destructive_functions():
    # The list of human-eval's reliability_guard; with it a program that tries gets a plain TypeError.
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
    # Forks without an audit event of its own; the sandbox's process limit stops it anyway.
    import _posixsubprocess
    _posixsubprocess.fork_exec = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _take_input_and_arm_verdict():
    """Reads the token and the program from stdin and installs the hook that alone can report a pass.

    Returns only the program: the token lives on in the hook's closure and in no frame of this file.
    """
    main_frame = sys._getframe(1)
    token, _, source = _read_all(0).partition(b"\n")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    verdict_fd = os.dup(1)
    os.dup2(null, 1)
    os.close(null)
    write, exit_now, get_frame = os.write, os._exit, sys._getframe
    verdict = token + b"\n"

    def refuse(what):
        write(2, b"blocked by the sandbox guard: " + what.encode("utf-8", "replace") + b"\n")
        exit_now(1)

    def hook(event, args):
        # Ends the process instead of raising: a raised exception would carry this frame, and its closure, to the
        # program. Compares only exact str objects, so no code of the program runs inside the hook.
        try:
            if type(event) is not str:
                refuse("an audit event that is not a str")
            if event == _TESTS_COMPLETED:
                if get_frame(1) is main_frame:
                    write(verdict_fd, verdict)
                    exit_now(0)
                refuse("a forged end-of-tests event")
            if event in _REFUSED_EVENTS or event.startswith(_REFUSED_EVENT_PREFIXES):
                refuse(event)
            if event == "import" and args and type(args[0]) is str and args[0].partition(".")[0] in _REFUSED_IMPORTS:
                refuse("import " + args[0])
        except BaseException:
            exit_now(1)

    sys.addaudithook(hook)
    return source.decode("utf-8")


def main():
    memory_mb, cpu_seconds, file_mb = (int(v) for v in sys.argv[1:4])
    _set_limits(memory_mb, cpu_seconds, file_mb)
    real_stderr = sys.stderr
    exit_now, audit = os._exit, sys.audit
    try:
        source = _take_input_and_arm_verdict()
        code = compile(source, "program.py", "exec")
        _disable_destructive_functions()
        sink = _Discard()
        sys.stdout, sys.stderr, sys.stdin = sink, sink, io.StringIO()
        sys.__stdout__, sys.__stderr__, sys.__stdin__ = sink, sink, sys.stdin
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException:
        try:
            real_stderr.write(traceback.format_exc())
            real_stderr.flush()
        finally:
            exit_now(1)
    # Reached only when every statement of the program, its tests included, ran; the hook writes the token and exits.
    audit(_TESTS_COMPLETED)
    real_stderr.write("the sandbox guard's verdict hook did not answer\n")
    real_stderr.flush()
    exit_now(1)


main()
