using Xunit;
using FedLlm.Data;

namespace FedLlm.Tests.Data;

public sealed class SftCollatorTests
{
    [Fact]
    public void Pads_right_to_the_longest_with_mask_and_ignored_labels()
    {
        var shortOne = new SftExample([1, 20, 21], [-100, 21, 2], promptLength: 1, truncated: false, boundaryAligned: true);
        var longOne = new SftExample([1, 30, 31, 32, 2], [-100, -100, 31, 32, 2], promptLength: 2, truncated: false, boundaryAligned: true);
        var collator = new SftCollator(padTokenId: 7);

        var batch = collator.Collate([shortOne, longOne]);

        Assert.Equal([2L, 5L], batch.Shape);
        Assert.Equal([1L, 20, 21, 7, 7, /**/ 1, 30, 31, 32, 2], batch.InputIds);
        Assert.Equal([1L, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1], batch.AttentionMask);
        Assert.Equal([-100L, 21, 2, -100, -100, /**/ -100, -100, 31, 32, 2], batch.Labels);
        Assert.Equal(5, batch.LossTokenCount);
    }

    [Fact]
    public void Pad_id_comes_from_the_tokenizer()
    {
        Assert.Equal(CharTokenizer.Pad, new SftCollator(new CharTokenizer()).PadTokenId);
    }

    [Fact]
    public void Empty_batch_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => new SftCollator(0).Collate([]));
    }

    [Fact]
    public void Example_rejects_labels_of_another_length()
    {
        Assert.Throws<ArgumentException>(() => new SftExample([1, 2], [1], 0, false, true));
    }
}
