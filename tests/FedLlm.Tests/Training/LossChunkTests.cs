using FedLlm.Training;

namespace FedLlm.Tests.Training;

public class LossChunkTests
{
    [Theory]
    [InlineData(49152, 170)]   // SmolLM: 32 MiB / (49152 · 4 B) = 170.67
    [InlineData(128256, 65)]   // Llama 3: 33554432 / 513024 = 65.4
    [InlineData(32000, 262)]   // Llama 2 / Mistral: 33554432 / 128000 = 262.1
    [InlineData(64, 131072)]   // a test checkpoint: every row in one chunk
    [InlineData(1L << 24, 1)]  // a vocabulary whose one row exceeds the budget still gets a row
    public void Automatic_chunks_keep_one_float32_logits_tensor_within_32_MiB(long vocabulary, int expectedRows)
    {
        // Execute
        int rows = LossChunk.Rows(0, vocabulary);

        // Assert
        Assert.Equal(expectedRows, rows);
    }

    [Fact]
    public void A_configured_chunk_is_taken_as_it_is_and_a_negative_one_is_refused()
    {
        // Execute / Assert
        Assert.Equal(1024, LossChunk.Rows(1024, 49152));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => LossChunk.Rows(-1, 49152));
        Assert.Contains("loss chunk", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions { LossChunkTokens = -5 }.Validate());
    }
}
