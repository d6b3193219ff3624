using FedLlm.Data.Templates.Jinja;

namespace FedLlm.Tests.Data.Templates;

/// <summary>Python/Jinja2 semantics where the JavaScript reference differs or does not reach (values worked out by hand).</summary>
public sealed class JinjaTemplateTests
{
    private static string Render(string template, object? messages = null, Dictionary<string, object?>? extra = null)
    {
        var variables = new Dictionary<string, object?> { ["messages"] = messages ?? new List<object?>() };
        if (extra is not null) foreach (var (k, v) in extra) variables[k] = v;
        return JinjaTemplate.Parse(template).Render(variables);
    }

    [Theory]
    [InlineData("{{ true }} {{ none }} {{ 1.0 }} {{ 2.5 }}", "True None 1.0 2.5")]
    [InlineData("{{ ['a', 1] }}", "['a', 1]")]
    [InlineData("{{ '..x..'.strip('.') }}|{{ 'xxa'.lstrip('x') }}", "x|a")]
    [InlineData("{% for i in range(5) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", "013")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{% endfor %}", "24")]
    [InlineData("{{ 'a' if false }}|{{ missing }}|{{ missing is undefined }}", "||True")]
    [InlineData("{% set x %}in{{ 'side' }}{% endset %}{{ x|upper }}", "INSIDE")]
    [InlineData("{{ 'a,b,c'.split(',', 1) }}", "['a', 'b,c']")]
    [InlineData("{{ [3, 1, 2][::-1] }} {{ 'abcdef'[1:5:2] }} {{ [1, 2, 3][-2:] }}", "[2, 1, 3] bd [2, 3]")]
    [InlineData("{{ 1 + 2 * 3 - 4 // 3 }} {{ 'x' ~ (2 + 3) }} {{ 2 ~ 3 * 2 }} {{ -7 // 2 }} {{ -7 % 3 }}", "6 x5 26 -4 2")]
    [InlineData("{{ not 1 == 2 and 'yes' or 'no' }}", "yes")]
    [InlineData("{{- '  a  ' -}}\n\n  {{ 'b' }}", "  a  b")]
    public void Python_and_jinja2_semantics(string template, string expected) => Assert.Equal(expected, Render(template));

    [Fact]
    public void Missing_variables_render_like_python_none_only_when_set_to_none()
    {
        // An undefined variable renders as "", a None value as "None" (Jinja2's default Undefined and Python's str).
        Assert.Equal("|None", Render("{{ nope }}|{{ v }}", extra: new() { ["v"] = null }));
    }

    [Fact]
    public void Raise_exception_surfaces_the_templates_message()
    {
        var e = Assert.Throws<JinjaException>(() => Render("{% if messages|length == 0 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}"));
        Assert.Equal("Conversation roles must alternate", e.Message);
    }

    [Theory]
    [InlineData("{% macro m() %}x{% endmacro %}")]
    [InlineData("{% include 'other' %}")]
    [InlineData("{% if true %}never closed")]
    [InlineData("{{ 'unterminated }}")]
    public void Unsupported_or_malformed_templates_are_refused_when_parsed(string template) =>
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template));

    [Fact]
    public void Tojson_writes_python_json_dumps_separators_and_keeps_key_order_and_non_ascii()
    {
        var value = new OrderedDictionary<string, object?> { ["z"] = 1L, ["a"] = new List<object?> { "é\n\"", null, 2.5, false } };

        Assert.Equal("{\"z\": 1, \"a\": [\"é\\n\\\"\", null, 2.5, false]}", Render("{{ v|tojson }}", extra: new() { ["v"] = value }));
        Assert.Equal("{\n  \"z\": 1,\n  \"a\": [\n    \"é\\n\\\"\",\n    null,\n    2.5,\n    false\n  ]\n}", Render("{{ v|tojson(indent=2) }}", extra: new() { ["v"] = value }));
    }
}
