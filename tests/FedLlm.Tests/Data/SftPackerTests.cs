using FedLlm.Data;

namespace FedLlm.Tests.Data;

public sealed class SftPackerTests
{
    private static SftExample Example(int length, int prompt, int first) =>
        new(Enumerable.Range(first, length).ToArray(),
            Enumerable.Range(first, length).Select((id, i) => i < prompt ? SftExampleBuilder.IgnoreIndex : id).ToArray(),
            prompt, truncated: false, boundaryAligned: true);

    [Fact]
    public void Examples_are_packed_in_order_without_exceeding_the_length_and_labels_are_unchanged()
    {
        SftExample[] examples = [Example(4, 2, 100), Example(3, 1, 200), Example(5, 3, 300), Example(2, 1, 400)];

        var packed = SftPacker.Pack(examples, maxLength: 8).ToList();

        Assert.Equal(2, packed.Count);
        Assert.Equal([0, 4], packed[0].DocumentStarts);
        Assert.Equal(examples[0].InputIds.Concat(examples[1].InputIds), packed[0].Sequence.InputIds);
        Assert.Equal(examples[0].Labels.Concat(examples[1].Labels), packed[0].Sequence.Labels);
        Assert.Equal(examples[2].Labels.Concat(examples[3].Labels), packed[1].Sequence.Labels);
        Assert.All(packed, p => Assert.True(p.Sequence.Length <= 8));
        // Every example's first token is a prompt token, so the prediction across a boundary is never trained on.
        Assert.All(packed, p => Assert.All(p.DocumentStarts, s => Assert.Equal(SftExampleBuilder.IgnoreIndex, p.Sequence.Labels[s])));
    }

    [Fact]
    public void Position_ids_restart_and_the_block_diagonal_mask_isolates_examples()
    {
        var packed = SftPacker.Pack([Example(2, 1, 10), Example(3, 1, 20)], 8).Single();

        Assert.Equal([0, 1, 0, 1, 2], packed.PositionIds());
        var mask = packed.BlockDiagonalCausalMask();
        bool At(int t, int s) => mask[t * 5 + s];
        Assert.True(At(1, 0));
        Assert.False(At(2, 1));
        Assert.True(At(4, 2));
        Assert.False(At(0, 1));
    }

    [Fact]
    public void An_example_longer_than_the_packed_length_is_refused()
    {
        Assert.Throws<ArgumentException>(() => SftPacker.Pack([Example(9, 1, 0)], 8).ToList());
    }
}
