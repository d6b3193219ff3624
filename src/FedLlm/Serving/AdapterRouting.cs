using static TorchSharp.torch;

namespace FedLlm.Serving;

/// <summary>
/// Which adapter each row of the current batch uses: one shared object that every <see cref="MultiLoraLinear"/> of a
/// model reads, set once per batch by the decoder, so a batch may mix requests for different adapters.
/// </summary>
/// <remarks>Not thread-safe: one decoding thread sets it and runs the forward passes that read it.</remarks>
public sealed class AdapterRouting : IDisposable
{
    private readonly List<(int Slot, Tensor? Rows)> groups = new();

    /// <summary>The rows of each adapter slot in the batch; <c>Rows</c> null means every row (one adapter for all).</summary>
    public IReadOnlyList<(int Slot, Tensor? Rows)> Groups => groups;

    /// <summary>Routes row <c>b</c> to adapter slot <c>slots[b]</c> (<see cref="AdapterBank.BaseSlot"/>: no adapter).</summary>
    public void Route(IReadOnlyList<int> slots)
    {
        Clear();
        var distinct = slots.Distinct().Where(s => s != AdapterBank.BaseSlot).ToList();
        if (distinct.Count == 1 && slots.All(s => s == distinct[0]))
        {
            groups.Add((distinct[0], null));
            return;
        }
        foreach (int slot in distinct)
        {
            var rows = Enumerable.Range(0, slots.Count).Where(b => slots[b] == slot).Select(b => (long)b).ToArray();
            groups.Add((slot, tensor(rows).DetachFromDisposeScope()));
        }
    }

    /// <summary>Forgets the current batch's routing and frees its row indices.</summary>
    public void Clear()
    {
        foreach (var (_, rows) in groups) rows?.Dispose();
        groups.Clear();
    }

    /// <summary>Frees the row indices, as <see cref="Clear"/>.</summary>
    public void Dispose() => Clear();
}
