using System.Runtime.CompilerServices;

namespace FedLlm.Tests;

internal static class TestAssemblySetup
{
    // Test classes build tensors in static fields, which can run before any FedLlm type is touched.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize() => FedLlm.Runtime.OpenMpPolicy.EnsureApplied();
}
