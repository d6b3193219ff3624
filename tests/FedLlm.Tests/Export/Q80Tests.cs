using System.Buffers.Binary;
using FedLlm.Export;

namespace FedLlm.Tests.Export;

public sealed class Q80Tests
{
    [Fact]
    public void ABlockStoresMaxOver127AsFp16AndRoundsHalvesAwayFromZero()
    {
        // max |x| = 127 gives d = 1, so q = round(x) exactly; ±2.5 tells half-away-from-zero from banker's rounding.
        var x = new float[32];
        x[0] = 127f; x[1] = -2.5f; x[2] = 2.5f; x[3] = 0.49f; x[4] = -127f;
        var bytes = new byte[Q80.BlockBytes];
        Q80.Quantize(x, bytes);

        Assert.Equal((Half)1f, BinaryPrimitives.ReadHalfLittleEndian(bytes));
        Assert.Equal(new sbyte[] { 127, -3, 3, 0, -127 }, bytes[2..7].Select(b => (sbyte)b).ToArray());
    }

    [Fact]
    public void AZeroBlockHasZeroScaleAndValues()
    {
        var bytes = new byte[Q80.BlockBytes];
        bytes.AsSpan().Fill(0xFF);
        Q80.Quantize(new float[32], bytes);
        Assert.All(bytes, b => Assert.Equal(0, b));
    }

    [Fact]
    public void DequantisedWeightsAreWithinHalfAStepPlusTheScaleRounding()
    {
        var random = new Random(5);
        var x = Enumerable.Range(0, 32 * 8).Select(_ => (float)(random.NextDouble() * 2 - 1) * 3f).ToArray();
        var bytes = new byte[x.Length / 32 * Q80.BlockBytes];
        Q80.Quantize(x, bytes);
        var back = Q80.Dequantize(bytes);
        for (int block = 0; block < 8; block++)
        {
            float d = x.Skip(block * 32).Take(32).Max(Math.Abs) / 127f;
            for (int j = 0; j < 32; j++)
            {
                int i = block * 32 + j;
                // Half a step, plus fp16's relative rounding of d (2^-11) times |q| ≤ 127.
                Assert.True(Math.Abs(back[i] - x[i]) <= d * (0.5f + 127f / 2048f) + 1e-6f, $"{x[i]} → {back[i]}");
            }
        }
    }
}
