using FedLlm.Federation;
using FedLlm.Federation.Validation;
using static FedLlm.Tests.Federation.FederationTestData;
using static TorchSharp.torch;

namespace FedLlm.Tests.Federation.Validation;

public class UpdateValidatorTests
{
    // x = [1, −2 | 0.5, 0, 3] and y = [1.2, −1 | 0.5, 1, 2]: y − x = [0.2, 1, 0, 1, −1], ‖y − x‖² = 0.04 + 1 + 0 + 1 + 1 = 3.04.
    static readonly double[] X = { 1.0, -2.0, 0.5, 0.0, 3.0 };
    static readonly double[] Y = { 1.2, -1.0, 0.5, 1.0, 2.0 };
    const string KeyExtra = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";

    static UpdateVerdict Check(Dictionary<string, Tensor> weights, long count = 100, UpdateLimits? limits = null,
        Dictionary<string, Tensor>? controlDelta = null) =>
        UpdateValidator.Validate(Adapter(X), FederationTestData.WithTensorSet(new ClientUpdate("client-2", weights, count), controlDelta), limits ?? UpdateLimits.None);

    static void AssertRejected(UpdateVerdict verdict, params string[] fragments)
    {
        Assert.False(verdict.Accepted, "the update should have been rejected");
        Assert.NotNull(verdict.Reason);
        Assert.StartsWith("client-2: ", verdict.Reason);
        foreach (var fragment in fragments) Assert.Contains(fragment, verdict.Reason);
    }

    [Fact]
    public void A_good_update_is_accepted_with_its_norm()
    {
        var verdict = Check(Adapter(Y));
        Assert.True(verdict.Accepted, verdict.Reason);
        Assert.Null(verdict.Reason);
        Assert.Equal(Math.Sqrt(3.04), verdict.UpdateNorm!.Value, 1e-6);
    }

    [Fact]
    public void The_norm_bound_is_on_the_l2_distance_to_the_global()
    {
        // √3.04 ≈ 1.7436: a bound just below rejects, just above accepts. An L1 norm (3.2) or the norm of y alone
        // (√6.69 ≈ 2.59) would fall on the wrong side of 1.75.
        AssertRejected(Check(Adapter(Y), limits: new UpdateLimits { MaxUpdateNorm = 1.74 }), "norm", "1.74356", "bound 1.74");
        Assert.True(Check(Adapter(Y), limits: new UpdateLimits { MaxUpdateNorm = 1.75 }).Accepted);
    }

    [Fact]
    public void A_missing_tensor_is_named()
    {
        var weights = Adapter(Y);
        weights.Remove(KeyB);
        var verdict = Check(weights);
        AssertRejected(verdict, $"tensor {KeyB} is missing", "1 sent, the global adapter has 2");
        Assert.DoesNotContain(KeyA, verdict.Reason);
    }

    [Fact]
    public void An_extra_tensor_is_named()
    {
        var weights = Adapter(Y);
        weights[KeyExtra] = zeros(1, 2);
        AssertRejected(Check(weights), $"tensor {KeyExtra} is not in the global adapter");
    }

    [Fact]
    public void A_wrong_shape_is_named_even_with_the_same_element_count()
    {
        var weights = Adapter(Y);
        weights[KeyA] = tensor(new[] { 1.2f, -1f }).reshape(2, 1); // the global has [1, 2]: same 2 values, transposed
        AssertRejected(Check(weights), $"tensor {KeyA} has shape [2, 1], global has [1, 2]");
    }

    [Fact]
    public void A_wrong_dtype_is_named()
    {
        var weights = Adapter(Y[..2], Y[2..], ScalarType.Float64);
        AssertRejected(Check(weights), "has dtype Float64, global has Float32");
    }

    [Fact]
    public void NaN_and_Inf_are_refused_with_the_tensor_and_the_count()
    {
        var nan = Adapter(new[] { 1.2, -1.0 }, new[] { 0.5, double.NaN, 2.0 });
        var verdict = Check(nan);
        AssertRejected(verdict, $"tensor {KeyB} has 1 NaN value (of 3)");
        Assert.DoesNotContain(KeyA, verdict.Reason);

        var inf = Adapter(new[] { double.PositiveInfinity, double.NegativeInfinity }, new[] { 0.5, 1.0, 2.0 });
        AssertRejected(Check(inf), $"tensor {KeyA} has 2 Inf values");
    }

    [Fact]
    public void Finite_values_whose_squares_overflow_are_refused_by_the_norm_bound_not_called_non_finite()
    {
        // 1e30² overflows float32; the values themselves are finite, so the reason must be the norm, not NaN/Inf.
        var huge = Adapter(new[] { 1e30, 0.0 }, new[] { 0.5, 0.0, 3.0 });
        var verdict = Check(huge, limits: new UpdateLimits { MaxUpdateNorm = 1e6 });
        AssertRejected(verdict, "exceeds the bound 1E+06");
        Assert.DoesNotContain("NaN", verdict.Reason);
        Assert.Equal(double.PositiveInfinity, verdict.UpdateNorm);
    }

    [Theory]
    [InlineData(0L, "example count 0 is not positive")]
    [InlineData(-3L, "example count -3 is not positive")]
    [InlineData(1001L, "example count 1001 exceeds the server's limit of 1000")]
    public void Example_counts_outside_one_to_the_limit_are_refused(long count, string expected)
    {
        AssertRejected(Check(Adapter(Y), count, new UpdateLimits { MaxExampleCount = 1000 }), expected);
    }

    [Fact]
    public void Example_counts_at_the_edges_are_accepted()
    {
        Assert.True(Check(Adapter(Y), 1).Accepted);
        Assert.True(Check(Adapter(Y), 1000, new UpdateLimits { MaxExampleCount = 1000 }).Accepted);
    }

    [Fact]
    public void A_well_formed_control_delta_is_accepted()
    {
        var verdict = Check(Adapter(Y), controlDelta: Adapter(new[] { 0.1, 0.2, 0.3, 0.4, 0.5 }));
        Assert.True(verdict.Accepted, verdict.Reason);
    }

    [Fact]
    public void A_bad_control_delta_is_refused_as_a_control_delta()
    {
        var wrongShape = Adapter(Y);
        wrongShape[KeyB] = zeros(1, 3);
        AssertRejected(Check(Adapter(Y), controlDelta: wrongShape), $"control delta tensor {KeyB} has shape [1, 3], global has [3, 1]");

        var missing = Adapter(Y);
        missing.Remove(KeyA);
        AssertRejected(Check(Adapter(Y), controlDelta: missing), $"control delta tensor {KeyA} is missing");

        var nan = Adapter(new[] { double.NaN, 0.0, 0.0, 0.0, 0.0 });
        AssertRejected(Check(Adapter(Y), controlDelta: nan), $"control delta tensor {KeyA} has 1 NaN value");
    }

    [Fact]
    public void Several_missing_names_are_listed_up_to_three_then_counted()
    {
        var global = Enumerable.Range(0, 5).ToDictionary(i => $"layer{i}.lora_A.weight", _ => zeros(2));
        var verdict = UpdateValidator.Validate(global, new ClientUpdate("client-2", new Dictionary<string, Tensor>(), 1), UpdateLimits.None);
        AssertRejected(verdict, "tensors layer0.lora_A.weight, layer1.lora_A.weight, layer2.lora_A.weight and 2 more are missing");
    }

    [Fact]
    public void A_nonsensical_limit_is_the_servers_error_not_the_clients()
    {
        Assert.Throws<ArgumentException>(() => Check(Adapter(Y), limits: new UpdateLimits { MaxUpdateNorm = double.NaN }));
    }

    [Fact]
    public void The_norm_of_a_large_update_is_the_float64_sum_of_its_float32_squares_and_a_NaN_in_the_last_lanes_is_found()
    {
        // 3 M + 5 elements: several parallel pieces and a tail shorter than a vector.
        const long n = 3_000_005;
        using var generator = new Generator(11);
        var global = new Dictionary<string, Tensor> { [KeyA] = randn(new long[] { n }, generator: generator) };
        var sent = new Dictionary<string, Tensor> { [KeyA] = global[KeyA] + 0.01f * randn(new long[] { n }, generator: generator) };
        var verdict = UpdateValidator.Validate(global, new ClientUpdate("client-2", sent, 10), UpdateLimits.None);
        using var squares = (sent[KeyA] - global[KeyA]).pow(2);
        double expected = Math.Sqrt(squares.sum(ScalarType.Float64).item<double>());
        Assert.True(verdict.Accepted);
        Assert.Equal(expected, verdict.UpdateNorm!.Value, expected * 1e-12);

        sent[KeyA][n - 2] = float.NaN;
        var nan = UpdateValidator.Validate(global, new ClientUpdate("client-2", sent, 10), UpdateLimits.None);
        Assert.False(nan.Accepted);
        Assert.Contains("1 NaN value", nan.Reason);
        foreach (var t in global.Values.Concat(sent.Values)) t.Dispose();
    }
}
