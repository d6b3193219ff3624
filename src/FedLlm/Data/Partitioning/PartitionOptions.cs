namespace FedLlm.Data.Partitioning;

/// <summary>The partition schemes, for configuration and the CLI.</summary>
public enum PartitionKind
{
    /// <summary><see cref="IidPartitioner"/>.</summary>
    Iid,

    /// <summary><see cref="DirichletPartitioner"/>: label skew.</summary>
    Dirichlet,

    /// <summary><see cref="ShardPartitioner"/>: k labels per client.</summary>
    Shards,

    /// <summary><see cref="QuantitySkewPartitioner"/>: skewed client sizes.</summary>
    QuantitySkew,
}

/// <summary>A partition scheme and its parameters; <see cref="Create"/> validates and builds the partitioner.</summary>
public sealed record PartitionOptions
{
    /// <summary>The scheme.</summary>
    public PartitionKind Kind { get; init; } = PartitionKind.Iid;

    /// <summary>Dirichlet concentration for <see cref="PartitionKind.Dirichlet"/> and <see cref="PartitionKind.QuantitySkew"/>.</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>k for <see cref="PartitionKind.Shards"/>.</summary>
    public int LabelsPerClient { get; init; } = 2;

    /// <summary>Redraw threshold for the Dirichlet-based schemes.</summary>
    public int MinExamplesPerClient { get; init; } = 1;

    /// <summary>OpenFedLLM's strided <c>shard(N, i)</c> for <see cref="PartitionKind.Iid"/>.</summary>
    public bool Strided { get; init; }

    /// <summary>Parses a CLI name: iid, dirichlet, shards (or pathological), quantity (or quantity-skew).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static PartitionKind ParseKind(string name) => name?.ToLowerInvariant() switch
    {
        "iid" => PartitionKind.Iid,
        "dirichlet" or "dir" => PartitionKind.Dirichlet,
        "shards" or "shard" or "pathological" => PartitionKind.Shards,
        "quantity" or "quantity-skew" or "quantityskew" => PartitionKind.QuantitySkew,
        _ => throw new ArgumentException($"Unknown partition '{name}'. Known: iid, dirichlet, shards, quantity.", nameof(name)),
    };

    /// <summary>Builds the partitioner; the constructors check the parameters.</summary>
    public IPartitioner Create() => Kind switch
    {
        PartitionKind.Iid => new IidPartitioner(Strided),
        PartitionKind.Dirichlet => new DirichletPartitioner(Alpha, MinExamplesPerClient),
        PartitionKind.Shards => new ShardPartitioner(LabelsPerClient),
        PartitionKind.QuantitySkew => new QuantitySkewPartitioner(Alpha, MinExamplesPerClient),
        _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, null),
    };
}
