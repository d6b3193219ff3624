using FedLlm.Checkpoints;
using static TorchSharp.torch;

namespace FedLlm.Tests.Checkpoints;

/// <summary>The finiteness check reads float32/bfloat16/float16 in place; it must agree with isfinite everywhere.</summary>
public class FiniteTensorsTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.Float64)]
    public void Nan_and_infinities_are_found_at_any_position_and_extreme_finite_values_pass(ScalarType dtype)
    {
        // 1003 elements: whole vectors and a tail; the largest finite value, the smallest subnormal, −0 and zeros pass
        foreach (double bad in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity })
            foreach (long position in new long[] { 0, 17, 511, 1002 })
            {
                using var values = zeros([1003], dtype);
                values[position] = tensor(bad, dtype);
                Assert.False(FiniteTensors.AllFinite(values), $"{dtype}: {bad} at {position}");
                Assert.Throws<NonFiniteTensorException>(() => FiniteTensors.Require(values, "w", "f.safetensors", "load"));
            }
        using var finite = zeros([1003], dtype);
        double largest = dtype switch { ScalarType.Float32 => float.MaxValue, ScalarType.BFloat16 => 3.3895313892515355e38, ScalarType.Float16 => 65504, _ => double.MaxValue };
        finite[3] = tensor(largest, dtype);
        finite[4] = tensor(-largest, dtype);
        finite[5] = tensor(dtype == ScalarType.Float16 ? 6e-8 : 1e-45, dtype);
        finite[1002] = tensor(-0.0, dtype);
        Assert.True(finite.isfinite().all().item<bool>(), "the fixture itself must be finite");
        Assert.True(FiniteTensors.AllFinite(finite));
    }

    [Fact]
    public void A_non_contiguous_view_is_checked_by_its_values_not_its_storage()
    {
        // The NaN sits in the storage but outside the view (every other column)
        using var storage = zeros([4, 6]);
        storage[0, 1] = tensor(float.NaN);
        using var view = storage.slice(1, 0, 6, 2);
        Assert.False(view.is_contiguous());
        Assert.True(FiniteTensors.AllFinite(view));
        Assert.False(FiniteTensors.AllFinite(storage));
    }
}
