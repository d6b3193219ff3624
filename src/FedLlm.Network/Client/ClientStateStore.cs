using FedLlm.Checkpoints;
using FedLlm.Federation;
using static TorchSharp.torch;

namespace FedLlm.Network.Client;

/// <summary>
/// A client's own state on its own disk (SCAFFOLD's c_i, kept AdamW moments, any client hook's state), one atomically written file per round the
/// client submitted: <c>after-round-{r}.safetensors</c>. A task for round r trains from the newest state of a round
/// before r, so when a killed server re-runs a round the client had already answered, the client starts that round from
/// the same state as the first time.
/// </summary>
public sealed class ClientStateStore(string directory)
{
    const string Prefix = "after-round-";
    const string RunFile = "run-id";
    /// <summary>The server re-runs at most its one uncommitted round, so a few files are enough.</summary>
    const int Keep = 3;

    /// <summary>The folder holding this client's state files and the run-id file that ties them to one run.</summary>
    public string Directory { get; } = directory;

    /// <summary>Ties the folder to <paramref name="runId"/>; states of another run are removed (returns true if any were).</summary>
    public bool BindToRun(string runId)
    {
        System.IO.Directory.CreateDirectory(Directory);
        string path = Path.Combine(Directory, RunFile);
        string? previous = File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        if (previous == runId) return false;
        bool removed = false;
        foreach (var (file, _) in States())
        {
            File.Delete(file);
            removed = true;
        }
        Io.AtomicFile.WriteAllText(path, runId);
        return removed;
    }

    /// <summary>The state to train round <paramref name="round"/> from (fresh when no earlier round was submitted).</summary>
    public ClientState LoadBefore(int round)
    {
        var file = States().Where(s => s.Round < round).OrderByDescending(s => s.Round).Select(s => s.Path).FirstOrDefault();
        if (file is null) return new ClientState();
        using var reader = SafeTensorsFile.Open(file);
        return ClientState.FromTensors(reader.Tensors.Keys.Select(name => KeyValuePair.Create(name, reader.Read(name))));
    }

    /// <summary>Writes the state after submitting round <paramref name="round"/>, then drops the oldest files.</summary>
    public void Save(int round, ClientState state)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var entries = state.Tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        SafeTensorsWriter.Write(Path.Combine(Directory, $"{Prefix}{round}.safetensors"), entries);
        foreach (var (file, _) in States().OrderByDescending(s => s.Round).Skip(Keep)) File.Delete(file);
    }

    IEnumerable<(string Path, int Round)> States() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.GetFiles(Directory, Prefix + "*.safetensors")
                .Select(f => (Path: f, Ok: int.TryParse(System.IO.Path.GetFileNameWithoutExtension(f)[Prefix.Length..], out int r), Round: r))
                .Where(x => x.Ok).Select(x => (x.Path, x.Round)).ToList()
            : Enumerable.Empty<(string, int)>();
}
