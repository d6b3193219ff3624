namespace FedLlm.Tests;

/// <summary>
/// Tests that change or read process-wide state (torch's default device, the allocator's statistics) must not run beside
/// others: xunit runs this collection after the parallel ones, one test at a time.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAloneCollection
{
    public const string Name = "changes or reads process-wide state";
}
