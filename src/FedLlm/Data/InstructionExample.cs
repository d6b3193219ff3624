namespace FedLlm.Data;

/// <summary>
/// One supervised fine-tuning example in OpenFedLLM's unified SFT schema (columns <c>instruction</c>, <c>response</c>).
/// </summary>
/// <param name="Instruction">The user-side text, already joined with any Alpaca <c>input</c> (see <see cref="AlpacaRecord.ToInstructionExample"/>).</param>
/// <param name="Response">The text the model is trained to produce.</param>
public sealed record InstructionExample(string Instruction, string Response);
