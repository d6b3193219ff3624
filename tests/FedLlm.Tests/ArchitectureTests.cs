using System.Reflection;
using System.Reflection.Emit;

namespace FedLlm.Tests;

/// <summary>
/// The layering of the core, checked on the compiled assemblies: every type a namespace's code mentions — in
/// signatures, fields, base types and method bodies (read from the IL) — must come from a namespace it may depend on.
/// </summary>
public class ArchitectureTests
{
    static readonly Assembly Library = typeof(FedLlm.Federation.IFederatedStrategy).Assembly;
    static readonly Assembly Network = typeof(FedLlm.Network.WireMapping).Assembly;

    /// <summary>(from, to) namespace rules: code in "from" (and its sub-namespaces) must not use "to" (or its sub-namespaces).</summary>
    public static TheoryData<string, string> Forbidden => new()
    {
        // Modeling is the bottom of the model stack.
        { "FedLlm.Modeling", "FedLlm.Peft" }, { "FedLlm.Modeling", "FedLlm.Training" }, { "FedLlm.Modeling", "FedLlm.Alignment" },
        { "FedLlm.Modeling", "FedLlm.Federation" }, { "FedLlm.Modeling", "FedLlm.Runs" }, { "FedLlm.Modeling", "FedLlm.Data" },
        { "FedLlm.Modeling", "FedLlm.Defaults" }, { "FedLlm.Modeling", "FedLlm.Evaluation" },
        { "FedLlm.Quantization", "FedLlm.Modeling" }, { "FedLlm.Quantization", "FedLlm.Peft" },
        { "FedLlm.Peft", "FedLlm.Training" }, { "FedLlm.Peft", "FedLlm.Federation" },
        { "FedLlm.Training", "FedLlm.Federation" }, { "FedLlm.Training", "FedLlm.Alignment" },
        { "FedLlm.Alignment", "FedLlm.Federation" }, { "FedLlm.Alignment", "FedLlm.Runs" },
        { "FedLlm.Data", "FedLlm.Defaults" }, { "FedLlm.Data", "FedLlm.Federation" }, { "FedLlm.Data", "FedLlm.Training" },
        // The federation core knows no transport, no simulation and no composition of runs.
        { "FedLlm.Federation", "FedLlm.Network" }, { "FedLlm.Federation", "FedLlm.Cli" }, { "FedLlm.Federation", "FedLlm.Runs" },
        { "FedLlm.Federation", "FedLlm.Federation.Simulation" }, { "FedLlm.Federation", "FedLlm.Federation.Strategies" },
        { "FedLlm.Federation", "FedLlm.Privacy" },
        { "FedLlm.Privacy", "FedLlm.Runs" }, { "FedLlm.Privacy", "FedLlm.Network" },
        // Secure aggregation sits on the core and knows no DP, no runs and no transport; the core and DP do not know it.
        { "FedLlm.Federation", "FedLlm.Federation.SecureAggregation" }, { "FedLlm.Privacy", "FedLlm.Federation.SecureAggregation" },
        { "FedLlm.Federation.SecureAggregation", "FedLlm.Privacy" }, { "FedLlm.Federation.SecureAggregation", "FedLlm.Runs" },
        { "FedLlm.Federation.SecureAggregation", "FedLlm.Network" }, { "FedLlm.Federation.SecureAggregation", "FedLlm.Federation.Simulation" },
        // The asynchronous loop sits on the core beside the round loop; it knows no simulation, runs, transport or DP.
        { "FedLlm.Federation", "FedLlm.Federation.Async" }, { "FedLlm.Federation.Async", "FedLlm.Federation.Simulation" },
        { "FedLlm.Federation.Async", "FedLlm.Runs" }, { "FedLlm.Federation.Async", "FedLlm.Network" }, { "FedLlm.Federation.Async", "FedLlm.Privacy" },
    };

    /// <summary>Namespaces that sit inside another but are layers of their own (the core may not use them).</summary>
    static readonly string[] OwnLayers = ["FedLlm.Federation.Simulation", "FedLlm.Federation.Strategies", "FedLlm.Federation.Robust", "FedLlm.Federation.Attacks",
        "FedLlm.Federation.SecureAggregation", "FedLlm.Federation.Async",
        "FedLlm.Federation.Personalization", "FedLlm.Federation.LowRank"];

    [Theory]
    [MemberData(nameof(Forbidden))]
    public void A_namespace_does_not_use_a_layer_above_it(string from, string to)
    {
        var violations = Dependencies(Library).Concat(Dependencies(Network))
            .Where(d => IsIn(d.From, from) && IsIn(d.To, to) && !(to != from && IsIn(d.To, from) && !IsIn(to, from)))
            .Select(d => $"{d.FromType} uses {d.ToType}")
            .Distinct().Order().ToList();
        Assert.True(violations.Count == 0, $"{from} must not depend on {to}:\n" + string.Join("\n", violations.Take(20)));
    }

    [Fact]
    public void The_dependency_scan_sees_method_bodies()
    {
        // FederationServer calls TorchRuntime only inside an async method's body (its state machine); if the IL scan were
        // broken, the rules above would pass vacuously.
        var deps = Dependencies(Library).Where(d => d.FromType == "FedLlm.Federation.FederationServer").ToList();
        Assert.Contains(deps, d => d.ToType == "FedLlm.Runtime.TorchRuntime");
        Assert.Contains(Dependencies(Library), d => d.From == "FedLlm.Runs" && d.To == "FedLlm.Federation.Simulation");
    }

    /// <summary>"a.b" is in "a" and in "a.b"; a namespace listed in <see cref="OwnLayers"/> is not in its parent.</summary>
    static bool IsIn(string ns, string layer)
    {
        if (ns != layer && !ns.StartsWith(layer + ".", StringComparison.Ordinal)) return false;
        return !OwnLayers.Any(own => own != layer && own.StartsWith(layer + ".", StringComparison.Ordinal) && (ns == own || ns.StartsWith(own + ".", StringComparison.Ordinal)));
    }

    sealed record Dependency(string From, string FromType, string To, string ToType);

    static readonly Dictionary<Assembly, List<Dependency>> Cache = new();

    static List<Dependency> Dependencies(Assembly assembly)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(assembly, out var cached)) return cached;
            var result = new List<Dependency>();
            foreach (var type in assembly.GetTypes())
            {
                string? from = Outermost(type).Namespace;
                if (from is null || !from.StartsWith("FedLlm", StringComparison.Ordinal)) continue;
                foreach (var used in UsedTypes(type))
                {
                    var target = Outermost(used);
                    if (target.Namespace is { } to && to.StartsWith("FedLlm", StringComparison.Ordinal) && to != from)
                        result.Add(new Dependency(from, Outermost(type).FullName!, to, target.FullName!));
                }
            }
            Cache[assembly] = result;
            return result;
        }
    }

    static Type Outermost(Type type)
    {
        while (type.DeclaringType is { } outer) type = outer;
        return type;
    }

    const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    static IEnumerable<Type> UsedTypes(Type type)
    {
        var found = new HashSet<Type>();
        void Add(Type? t)
        {
            if (t is null || !found.Add(t)) return;
            if (t.HasElementType) Add(t.GetElementType());
            if (t.IsGenericType && !t.IsGenericTypeDefinition) foreach (var a in t.GetGenericArguments()) Add(a);
        }
        Add(type.BaseType);
        foreach (var i in type.GetInterfaces()) Add(i);
        foreach (var f in type.GetFields(All)) Add(f.FieldType);
        foreach (var p in type.GetProperties(All)) Add(p.PropertyType);
        var methods = type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All));
        foreach (var m in methods)
        {
            if (m is MethodInfo mi) Add(mi.ReturnType);
            foreach (var p in m.GetParameters()) Add(p.ParameterType);
            foreach (var t in BodyTypes(m)) Add(t);
        }
        return found;
    }

    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    /// <summary>The types a method body's IL refers to (calls, field accesses, type tokens).</summary>
    static IEnumerable<Type> BodyTypes(MethodBase method)
    {
        byte[]? il;
        try
        {
            il = method.GetMethodBody()?.GetILAsByteArray();
        }
        catch (Exception e) when (e is InvalidOperationException or BadImageFormatException)
        {
            yield break;
        }
        if (il is null) yield break;
        var module = method.Module;
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        Type[]? methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int i = 0;
        while (i < il.Length)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            if (!OpCodesByValue.TryGetValue(value, out var op)) yield break;
            int size = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok)
            {
                int token = BitConverter.ToInt32(il, i);
                MemberInfo? member = null;
                try
                {
                    member = module.ResolveMember(token, typeArgs, methodArgs);
                }
                catch (ArgumentException)
                {
                }
                if (member is Type t) yield return t;
                else if (member?.DeclaringType is { } declaring) yield return declaring;
                if (member is MethodInfo called) yield return called.ReturnType;
                if (member is FieldInfo field) yield return field.FieldType;
            }
            i += size;
        }
    }
}
