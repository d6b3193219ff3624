using System.Runtime.CompilerServices;

// The tests drive the chunked read/write paths with tiny chunk sizes through internal overloads, so a 100-element tensor
// crosses many chunk boundaries instead of needing a tensor larger than 8 MiB.
[assembly: InternalsVisibleTo("FedLlm.Tests")]
