using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace FedLlm.Bench;

/// <summary>Runs bench/pytorch/train_step.py as a child process and reads the JSON line it prints.</summary>
public static class PyTorchBaseline
{
    /// <param name="precision">fp32, or bf16: the frozen base in bfloat16 (model.to(bfloat16)), LoRA in fp32.</param>
    public static StepMeasurement Run(TrainStepOptions options, string precision, TextWriter log)
    {
        if (!File.Exists(options.Script)) throw new FileNotFoundException($"PyTorch baseline script not found: {options.Script}");
        var start = new ProcessStartInfo(options.Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(options.Script);
        foreach (var (flag, value) in new (string, long)[]
                 {
                     ("--steps", options.Steps), ("--warmup", options.Warmup), ("--threads", options.Threads),
                     ("--batch", options.Batch), ("--seq", options.Seq), ("--seed", options.Seed),
                 })
        {
            start.ArgumentList.Add(flag);
            start.ArgumentList.Add(value.ToString(CultureInfo.InvariantCulture));
        }

        start.ArgumentList.Add("--dtype");
        start.ArgumentList.Add(precision);
        start.ArgumentList.Add("--lora-dropout");
        start.ArgumentList.Add(options.LoraDropout.ToString("R", CultureInfo.InvariantCulture));

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {options.Python}");
        // Progress lines pass through as they come; stdout is read whole, it holds one JSON line.
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.WriteLine(e.Data); };
        process.BeginErrorReadLine();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{options.Python} {options.Script} exited with code {process.ExitCode}");

        string json = stdout.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'))
            ?? throw new InvalidDataException($"the PyTorch baseline printed no JSON line; stdout was: {stdout}");
        var measured = JsonSerializer.Deserialize<StepMeasurement>(json)
            ?? throw new InvalidDataException($"the PyTorch baseline printed 'null': {json}");
        return measured with { Precision = precision };
    }
}
