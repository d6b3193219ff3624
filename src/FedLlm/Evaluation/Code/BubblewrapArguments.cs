using System.Globalization;

namespace FedLlm.Evaluation.Code;

/// <summary>
/// The bubblewrap (bwrap) command line that starts one sandboxed interpreter: new user, PID, network, IPC, UTS and
/// cgroup namespaces; a root file system that shows only /usr (and the interpreter's own prefix) read-only, an empty
/// size-limited /tmp as the working directory and a minimal /dev; no /proc; an empty environment; and resource limits
/// set by <c>prlimit</c> before the interpreter starts, so they hold for every process in the sandbox.
/// </summary>
/// <remarks>
/// Every process of a run lives in the new PID namespace, whose first process is bwrap's init: when the interpreter
/// exits, or when the host kills bwrap (<c>--die-with-parent</c> takes init with it), the kernel kills whatever else is
/// in the namespace, double-forked daemons included. /proc is left out on purpose: the new PID namespace would hide the
/// host's processes anyway, but /proc/self/mem would let a program read its own memory, where the guard keeps the pass
/// token.
/// </remarks>
internal static class BubblewrapArguments
{
    /// <summary>Where <c>prlimit</c> (util-linux) must be: inside the sandbox only /usr is visible.</summary>
    public const string Prlimit = "/usr/bin/prlimit";

    /// <summary>The sandbox's working directory (a private tmpfs).</summary>
    public const string WorkingDirectory = "/tmp";

    // Top-level folders that merged-/usr systems make symbolic links into /usr; older layouts have real folders.
    private static readonly string[] SystemFolders = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

    // Read by the dynamic loader and by time functions; nothing else of /etc is shown.
    private static readonly string[] EtcFiles = ["/etc/ld.so.cache", "/etc/localtime"];

    /// <summary>bwrap's arguments, ending with <c>prlimit … interpreter</c>; the caller appends the interpreter's own arguments.</summary>
    public static List<string> Build(PythonInterpreter interpreter, SandboxOptions options)
    {
        ArgumentNullException.ThrowIfNull(interpreter);
        ArgumentNullException.ThrowIfNull(options);
        var megabyte = 1024L * 1024;
        var args = new List<string>
        {
            // --unshare-user explicitly: --disable-userns requires it, and a nested user namespace could map a new root.
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr",
        };
        foreach (var folder in SystemFolders)
        {
            var info = new DirectoryInfo(folder);
            if (info.LinkTarget is { } target) args.AddRange(["--symlink", target, folder]);
            else if (info.Exists) args.AddRange(["--ro-bind", folder, folder]);
        }

        foreach (var file in EtcFiles) args.AddRange(["--ro-bind-try", file, file]);
        foreach (var prefix in interpreter.Prefixes.Where(p => !IsUnder(p, "/usr"))) args.AddRange(["--ro-bind", prefix, prefix]);
        args.AddRange([
            "--dev", "/dev", "--remount-ro", "/dev",
            // All files together may take what one file may: a program cannot fill the host's memory with many files.
            "--size", (options.MaxFileMegabytes * megabyte).ToString(CultureInfo.InvariantCulture), "--tmpfs", WorkingDirectory,
            "--chdir", WorkingDirectory,
            "--remount-ro", "/",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", WorkingDirectory,
            "--setenv", "TMPDIR", WorkingDirectory,
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "OMP_NUM_THREADS", "1",
            "--",
            Prlimit,
            // No process or thread beyond the interpreter. The count is per user inside the new user namespace, so it
            // binds from the start and does not depend on the host's other processes.
            "--nproc=0",
            $"--as={options.MemoryMegabytes * megabyte}",
            $"--data={options.MemoryMegabytes * megabyte}",
            $"--cpu={CpuSeconds(options)}",
            $"--fsize={options.MaxFileMegabytes * megabyte}",
            "--core=0",
            "--",
            interpreter.Executable,
        ]);
        return args;
    }

    /// <summary>The CPU-time limit: the wall clock is the real limit; this catches a process that somehow outlives the kill.</summary>
    public static int CpuSeconds(SandboxOptions options) => (int)Math.Ceiling(options.Timeout.TotalSeconds) + 1;

    private static bool IsUnder(string path, string folder) =>
        path == folder || path.StartsWith(folder + "/", StringComparison.Ordinal);
}
