using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FedLlm.Runtime;

/// <summary>
/// Makes libtorch's OpenMP threads sleep instead of spin while they wait for work, unless the user chose otherwise.
/// </summary>
/// <remarks>
/// libtorch ships GNU OpenMP, whose workers busy-wait between parallel regions. On a small machine where another process
/// (a second client, a test runner, the server) also wants the cores, the spinning threads starve the ones doing the
/// work: a forward and backward of a tiny model measured 1350 ms with the default policy against 4 ms with
/// OMP_WAIT_POLICY=PASSIVE while a benchmark held both cores. libgomp reads the variable once, when libtorch is loaded,
/// and .NET's Environment.SetEnvironmentVariable does not reach the native environment on Unix, so this calls libc's
/// setenv from a module initializer, before FedLlm's first torch call.
/// </remarks>
public static class OpenMpPolicy
{
    const string Variable = "OMP_WAIT_POLICY";

    [DllImport("libc", EntryPoint = "setenv", SetLastError = true)]
    static extern int SetEnv(string name, string value, int overwrite);

#pragma warning disable CA2255 // A module initializer is the only hook that runs before libtorch is loaded.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Apply()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Variable))) return; // the user's choice stands
        try { SetEnv(Variable, "PASSIVE", 0); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    /// <summary>Call before any direct torch use in code that may run before FedLlm's own (e.g. test fixtures). Runs the
    /// module's initializers, so <see cref="AllocatorPolicy"/> is applied too.</summary>
    public static void EnsureApplied() => RuntimeHelpers.RunModuleConstructor(typeof(OpenMpPolicy).Module.ModuleHandle);
}
