namespace FedLlm.Data;

/// <summary>
/// One preference example in OpenFedLLM's DPO schema (columns <c>prompt</c>, <c>chosen</c>, <c>rejected</c>).
/// </summary>
/// <param name="Prompt">The dialogue so far, formatted by a conversation template and ending with the assistant's
/// generation header (e.g. vicuna v1.1's "... ASSISTANT:").</param>
/// <param name="Chosen">The preferred continuation, as OpenFedLLM cuts it (usually with a leading space).</param>
/// <param name="Rejected">The dispreferred continuation, cut the same way.</param>
public sealed record PreferenceExample(string Prompt, string Chosen, string Rejected);
