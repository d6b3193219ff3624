using FedLlm.Federation;
using FedLlm.Federation.Robust;
using FedLlm.Privacy;
using FedLlm.Runs;
using FedLlm.Tests.Data;

namespace FedLlm.Tests.Privacy;

/// <summary>The privacy:, robust: and attack: sections of run.yaml: parsed, validated before any work, bad values refused
/// naming the key, and the privacy plan settled (σ from ε, the budget refused or stopped at).</summary>
public class PrivacyConfigTests
{
    static RunOptions Options(string yaml)
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, yaml);
        return RunConfig.Load(path).ToRunOptions("out");
    }

    static string Failure(string yaml)
    {
        var error = Assert.Throws<ArgumentException>(() => Options(yaml).Validate(FederatedRun.DefaultAlgorithms));
        return error.Message;
    }

    const string Federation = "federation: { rounds: 10, clients: 10, clients_per_round: 5 }\n";

    [Theory]
    [InlineData("privacy: { noise_multiplier: 1.0, clipping_norm: -1 }", "privacy.clipping_norm")]
    [InlineData("privacy: { noise_multiplier: -0.5 }", "privacy.noise_multiplier")]
    [InlineData("privacy: { target_epsilon: 0 }", "privacy.target_epsilon")]
    [InlineData("privacy: { clipping_norm: 0.1 }", "privacy.noise_multiplier or privacy.target_epsilon")]
    [InlineData("privacy: { noise_multiplier: 1, delta: 0.5 }", "privacy.delta")]
    [InlineData("privacy: { noise_multiplier: 1, stop_at_budget: true }", "privacy.stop_at_budget")]
    [InlineData("privacy: { mode: server-fixed, noise_multiplier: 1, clipped_count_stddev: 1 }", "clipped_count_stddev only apply to mode server-adaptive")]
    [InlineData("robust: { rule: krum, byzantine_clients: 2 }", "needs more than 6 clients per round")]
    [InlineData("robust: { rule: median, trim_fraction: 0.3 }", "robust.trim_fraction only applies")]
    [InlineData("robust: { rule: trimmed-mean, trim_fraction: 0.5 }", "robust.trim_fraction must be in [0, 0.5)")]
    [InlineData("robust: { rule: multi-krum, selected: 9 }", "robust.selected")]
    [InlineData("robust: { rule: flame, flame_noise_lambda: -0.01 }", "robust.flame_noise_lambda must be finite and ≥ 0, got -0.01")]
    [InlineData("robust: { rule: median, flame_noise_lambda: 0.001 }", "robust.flame_noise_lambda only applies to flame (rule is median)")]
    [InlineData("robust: { rule: flame, trim_fraction: 0.1 }", "robust.trim_fraction only applies to trimmed-mean (rule is flame)")]
    [InlineData("attack: { kind: sign-flip, fraction: 1.5 }", "attack.fraction")]
    [InlineData("attack: { kind: backdoor, poison_fraction: 0 }", "attack.poison_fraction")]
    [InlineData("attack: { kind: sign-flip, fraction: 0.01 }", "rounds to no attacker")]
    [InlineData("privacy: { noise_multiplier: 1 }\nrobust: { rule: median }", "does not compose with robust aggregation")]
    public void Bad_values_are_refused_before_any_work_naming_the_key(string section, string expected)
    {
        Assert.Contains(expected, Failure(Federation + section));
    }

    [Theory]
    [InlineData("privacy: { mode: central }", "privacy.mode 'central'")]
    [InlineData("robust: { rule: bulyan }", "robust.rule 'bulyan'")]
    [InlineData("attack: { kind: inversion }", "attack.kind 'inversion'")]
    [InlineData("privacy: { noise_multiplier: 1, seeding: urandom }", "privacy.seeding 'urandom'")]
    public void Unknown_names_are_refused_listing_the_known_ones(string section, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => Options(Federation + section));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void An_unknown_key_in_a_section_is_refused_naming_it()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, Federation + "privacy: { noise_multiplyer: 1 }");
        var error = Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => RunConfig.Load(path));
        Assert.Contains("noise_multiplyer", error.Message);
    }

    [Fact]
    public void An_unknown_key_in_the_robust_section_is_refused_naming_it()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "run.yaml");
        File.WriteAllText(path, Federation + "robust: { rule: flame, flame_lambda: 0.001 }");
        var error = Assert.Throws<FedLlm.Configuration.ConfigurationException>(() => RunConfig.Load(path));
        Assert.Contains("flame_lambda", error.Message);
    }

    [Fact]
    public void Flame_and_its_noise_lambda_map_onto_typed_options()
    {
        var options = Options(Federation + "robust: { rule: flame, flame_noise_lambda: 0.001 }");
        options.Validate(FederatedRun.DefaultAlgorithms);
        Assert.Equal(RobustRule.Flame, options.Robust!.Rule);
        Assert.Equal(0.001, options.Robust.FlameNoiseLambda);
        Assert.Equal(0.01, Options(Federation + "robust: { rule: flame }").Robust!.FlameNoiseLambda);
        var flame = Assert.IsType<Flame>(options.Robust.Create(5, noise: NoiseSource.FromRunSeed(1)));
        Assert.Equal(0.001, flame.NoiseLambda);
    }

    [Fact]
    public void A_server_yaml_robust_section_maps_flame_the_same_way()
    {
        using var dir = new TempDirectory();
        var config = FedLlm.Network.ServerConfig.Load(dir.File("server.yaml", """
            federation:
              rounds: 3
            robust:
              rule: flame
              flame_noise_lambda: 0.001
            server:
              roster: [a, b, c, d]
            """));
        var robust = config.ToRunOptions().Robust!;
        Assert.Equal(RobustRule.Flame, robust.Rule);
        Assert.Equal(0.001, robust.FlameNoiseLambda);
        var negative = FedLlm.Network.ServerConfig.Load(dir.File("negative.yaml", "robust: { rule: flame, flame_noise_lambda: -1 }\nserver: { roster: [a, b, c] }\n"));
        var e = Assert.ThrowsAny<ArgumentException>(() => negative.ToRunOptions().Validate(FederatedRun.DefaultAlgorithms));
        Assert.Contains("robust.flame_noise_lambda must be finite and ≥ 0", e.Message);
    }

    [Fact]
    public void The_sections_map_onto_typed_options()
    {
        var options = Options(Federation + """
            privacy: { mode: client-fixed, clipping_norm: 0.5, noise_multiplier: 1.2, delta: 1e-6, seeding: cryptographic }
            attack: { kind: backdoor, fraction: 0.4, trigger: zz, target_answer: negative }
            """);
        options.Validate(FederatedRun.DefaultAlgorithms);
        Assert.Equal(new PrivacyOptions { Mode = PrivacyMode.ClientFixed, ClippingNorm = 0.5, NoiseMultiplier = 1.2, Delta = 1e-6, Seeding = NoiseSeeding.Cryptographic },
            options.Privacy);
        Assert.Equal(FedLlm.Federation.Attacks.AttackKind.Backdoor, options.Attack!.Kind);
        Assert.Equal("zz", options.Attack.Trigger);
        Assert.Equal(RobustRule.MultiKrum, Options(Federation + "robust: { rule: multi-krum, byzantine_clients: 1 }").Robust!.Rule);
    }

    static readonly FederationOptions Ten = new() { Rounds = 10, TotalClients = 10, ClientsPerRound = 5 };

    [Fact]
    public void A_target_epsilon_alone_derives_the_smallest_sigma_that_meets_it_after_the_last_round()
    {
        var plan = PrivacyPlan.Create(new PrivacyOptions { TargetEpsilon = 4, Delta = 1e-5 }, Ten);
        Assert.Equal(0.5, plan.SamplingRate);
        Assert.Null(plan.StopAfterRounds);
        Assert.True(plan.EpsilonAfter(10).Epsilon <= 4);
        // Slightly less noise would exceed the budget: σ is the boundary, not just some σ that fits.
        Assert.True(RdpAccountant.EpsilonAfter(0.5, plan.NoiseMultiplier * 0.99, 10, 1e-5).Epsilon > 4);
    }

    [Fact]
    public void A_run_that_would_exceed_its_budget_is_refused_naming_the_round_it_runs_out()
    {
        // σ = 3, q = 0.5: ε after 10 rounds is above 2.5; the budget holds MaxRounds rounds.
        long fits = RdpAccountant.MaxRounds(0.5, 3.0, 2.5, 1e-5);
        Assert.InRange(fits, 1, 9);
        var error = Assert.Throws<ArgumentException>(() => PrivacyPlan.Create(new PrivacyOptions { NoiseMultiplier = 3, TargetEpsilon = 2.5 }, Ten));
        Assert.Contains("privacy.target_epsilon 2.5", error.Message);
        Assert.Contains($"holds only {fits}", error.Message);
        Assert.Contains("privacy.stop_at_budget", error.Message);
        Assert.Contains("privacy.target_epsilon", Failure(Federation + "privacy: { noise_multiplier: 3, target_epsilon: 2.5 }"));

        var stopping = PrivacyPlan.Create(new PrivacyOptions { NoiseMultiplier = 3, TargetEpsilon = 2.5, StopAtBudget = true }, Ten);
        Assert.Equal((int)fits, stopping.StopAfterRounds);
        Assert.True(stopping.EpsilonAfter((int)fits).Epsilon <= 2.5);
        Assert.True(stopping.EpsilonAfter((int)fits + 1).Epsilon > 2.5);
    }

    [Fact]
    public void Local_dp_is_accounted_without_amplification_by_sampling()
    {
        var plan = PrivacyPlan.Create(new PrivacyOptions { Mode = PrivacyMode.Local, NoiseMultiplier = 5 }, Ten);
        Assert.Equal(1.0, plan.SamplingRate);
        Assert.Equal(RdpAccountant.EpsilonAfter(1.0, 5, 10, 1e-5).Epsilon, plan.EpsilonAfter(10).Epsilon);
    }

    [Fact]
    public void Adaptive_clipping_refuses_a_noise_multiplier_its_count_noise_cannot_carry()
    {
        // m = 5: σ_b = 0.25 by default, so z must stay below 0.5.
        var error = Assert.Throws<ArgumentException>(() =>
            PrivacyPlan.Create(new PrivacyOptions { Mode = PrivacyMode.ServerAdaptive, NoiseMultiplier = 1 }, Ten));
        Assert.Contains("privacy.clipped_count_stddev", error.Message);
        PrivacyPlan.Create(new PrivacyOptions { Mode = PrivacyMode.ServerAdaptive, NoiseMultiplier = 1, ClippedCountStddev = 2 }, Ten);
    }
}
