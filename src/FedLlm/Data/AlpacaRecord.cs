namespace FedLlm.Data;

/// <summary>
/// One row in the Alpaca schema (<c>instruction</c>, <c>input</c>, <c>output</c>), the on-disk layout of
/// tatsu-lab/alpaca, vicgalle/alpaca-gpt4, CodeAlpaca-20k and FinGPT/fingpt-sentiment-train.
/// </summary>
/// <param name="Instruction">The task description.</param>
/// <param name="Input">Optional context for the task; the empty string when the task has none.</param>
/// <param name="Output">The reference answer.</param>
public sealed record AlpacaRecord(string Instruction, string Input, string Output)
{
    /// <summary>
    /// Converts to the unified SFT schema exactly as OpenFedLLM's <c>alpaca_format</c> does:
    /// the instruction alone when <see cref="Input"/> is empty, else instruction + " " + input; the response is the output.
    /// </summary>
    /// <remarks>The test is for the empty string only (no trimming), as in the reference, so whitespace-only
    /// inputs are kept; the result then matches what OpenFedLLM trained on.</remarks>
    public InstructionExample ToInstructionExample() =>
        new(Input.Length == 0 ? Instruction : Instruction + " " + Input, Output);
}
