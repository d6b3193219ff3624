System.Console.WriteLine("fedllm");
