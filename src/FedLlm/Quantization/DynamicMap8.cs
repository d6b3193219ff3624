namespace FedLlm.Quantization;

/// <summary>
/// The signed 8-bit dynamic-exponent code of bitsandbytes (create_dynamic_map(signed = True), Dettmers et al., 2022,
/// "8-bit Optimizers via Block-wise Quantization"), which QLoRA uses for its second-level quantisation of the scales.
/// </summary>
/// <remarks>
/// For exponent i = 0..6 there are 2^i fraction levels: the midpoints of linspace(0.1, 1, 2^i + 1), times 10^(i−6),
/// with both signs; plus 0 and 1: 2·127 + 2 = 256 values, sorted. Computed in float64 from that definition and rounded
/// to float32 once (bitsandbytes builds it in float32, so a level may differ from its table by one float32 ulp).
/// </remarks>
public static class DynamicMap8
{
    /// <summary>The 256 levels, ascending, float32; a code is an index into it.</summary>
    public static readonly float[] Levels = Build();

    static float[] Build()
    {
        var data = new List<double>();
        const int exponentBits = 7;
        for (int i = 0; i < exponentBits; i++)
        {
            int items = (1 << i) + 1;
            double scale = 1.0 / Math.Pow(10, exponentBits - 1 - i); // 10^(i−6); an exact integer power, then one division
            for (int k = 0; k + 1 < items; k++)
            {
                double lower = 0.1 + (1.0 - 0.1) * k / (items - 1);
                double upper = 0.1 + (1.0 - 0.1) * (k + 1) / (items - 1);
                double mean = (lower + upper) / 2.0;
                data.Add(scale * mean);
                data.Add(-(scale * mean));
            }
        }
        data.Add(0.0);
        data.Add(1.0);
        data.Sort();
        return data.Select(v => (float)v).ToArray();
    }
}
