using System.Collections.Concurrent;
using FedLlm.Runtime;

namespace FedLlm.Tests.Runtime;

/// <summary><see cref="StealingRanges"/>: each part streams its own share, the first to finish takes over the end of
/// another's, and no index is taken twice or left out.</summary>
public class StealingRangesTests
{
    [Fact]
    public void A_part_alone_takes_its_share_front_to_back_then_the_others_from_their_backs()
    {
        // Prepare: 10 indices for 2 parts (shares [0, 5) and [5, 10)), 2 at a time
        var ranges = new StealingRanges(10, 2, 2);

        // Execute: part 0 takes everything, as when part 1's thread never starts
        var taken = new List<(int, int)>();
        while (ranges.TryTake(0, out int start, out int end)) taken.Add((start, end));

        // Assert: its own share in order, then part 1's from its end; part 1 finds nothing left
        Assert.Equal([(0, 2), (2, 4), (4, 5), (8, 10), (6, 8), (5, 6)], taken);
        Assert.False(ranges.TryTake(1, out _, out _));
    }

    [Theory]
    [InlineData(1000, 2, 7)]
    [InlineData(1000, 4, 1)]
    [InlineData(3, 4, 2)]     // more parts than indices: some shares are empty from the start
    [InlineData(0, 2, 3)]
    public void Concurrent_parts_of_uneven_speed_take_every_index_exactly_once(int count, int parts, int chunk)
    {
        // Prepare: part p pauses p × 20 spins per index, so the fast parts run out first and take over
        var ranges = new StealingRanges(count, parts, chunk);
        var takenBy = new ConcurrentDictionary<int, int>();
        var duplicates = new ConcurrentBag<int>();

        // Execute
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, part =>
        {
            while (ranges.TryTake(part, out int start, out int end))
            {
                Assert.True(start < end && end - start <= chunk, $"[{start}, {end}) is not a chunk of at most {chunk}");
                for (int i = start; i < end; i++)
                {
                    if (!takenBy.TryAdd(i, part)) duplicates.Add(i);
                    Thread.SpinWait(20 * part);
                }
            }
        });

        // Assert
        Assert.Empty(duplicates);
        Assert.Equal(Enumerable.Range(0, count), takenBy.Keys.Order());
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new StealingRanges(-1, 2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StealingRanges(10, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StealingRanges(10, 2, 0));
    }
}
