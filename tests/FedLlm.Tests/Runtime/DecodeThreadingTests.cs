using FedLlm.Modeling;
using FedLlm.Quantization;
using FedLlm.Runtime;
using static TorchSharp.torch;

namespace FedLlm.Tests.Runtime;

/// <summary><see cref="DecodeThreading"/> and <see cref="LlamaForCausalLM.BeginDecodeStep"/>: libtorch on the calling
/// thread alone during a step whose products are FedLlm's, its threads back afterwards. Alone, because the step
/// changes libtorch's thread count, which a thread first using libtorch meanwhile would start with.</summary>
[Collection(RunsAloneCollection.Name)]
public class DecodeThreadingTests
{
    [Fact]
    public void A_step_gives_libtorch_one_thread_and_the_products_the_threads_it_had_then_restores_them()
    {
        // Prepare
        int before = get_num_threads();
        set_num_threads(3);
        try
        {
            // Execute and assert: inside, libtorch has 1 and the products 3; a nested step changes nothing
            Assert.True(DecodeThreading.Available, "libtorch's omp_set_num_threads was not found");
            Assert.True(DecodeThreading.SetsMklThreads, "libtorch's MKL_Set_Num_Threads_Local was not found");
            using (DecodeThreading.Begin())
            {
                Assert.Equal(1, get_num_threads());
                Assert.Equal(3, DecodeThreading.ProductThreads);
                using (DecodeThreading.Begin()) Assert.Equal(3, DecodeThreading.ProductThreads);
                Assert.Equal(1, get_num_threads());
            }
            Assert.Equal(3, get_num_threads());
            Assert.Equal(3, DecodeThreading.ProductThreads);

            // With one thread to begin with there is nothing to change
            set_num_threads(1);
            using (DecodeThreading.Begin()) Assert.Equal(1, DecodeThreading.ProductThreads);
            Assert.Equal(1, get_num_threads());
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Fact]
    public void A_thread_that_first_uses_libtorch_during_a_step_gets_the_process_count_not_the_step_s()
    {
        // Prepare
        int before = get_num_threads();
        set_num_threads(3);
        try
        {
            // Execute: a new thread asks libtorch for its count while this thread decodes
            int seenByNewThread = 0;
            using (DecodeThreading.Begin())
            {
                var thread = new Thread(() => seenByNewThread = get_num_threads());
                thread.Start();
                thread.Join();
            }

            // Assert: the step changed only this thread's setting (torch.set_num_threads would have given it 1)
            Assert.Equal(3, seenByNewThread);
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Fact]
    public void The_model_begins_a_step_only_for_the_rows_of_a_gradient_free_decode_on_a_dense_base()
    {
        // Prepare: two threads, a dense fp32 model and an int8 one
        int before = get_num_threads();
        set_num_threads(2);
        var config = TinyModels.Llama(false, 2, ModelFamily.Llama, null);
        using var dense = LlamaForCausalLM.CreateRandom(config, seed: 3);
        using var int8 = new LlamaForCausalLM(config, ScalarType.Float32, null, new BaseWeights(BasePrecision.Int8) { ComputeDtype = ScalarType.Float32 }.LayerFactory);
        using var oneToken = zeros(1, 1, ScalarType.Int64);
        using var eightRows = zeros(8, 1, ScalarType.Int64);
        using var prefill = zeros(1, 9, ScalarType.Int64);
        try
        {
            int ThreadsDuring(LlamaForCausalLM model, Tensor ids)
            {
                using var step = model.BeginDecodeStep(ids);
                return get_num_threads();
            }

            // Execute and assert: a step of one or eight rows without gradients changes the threads; a prefill of
            // nine rows, a quantised base and a step recording gradients do not
            int decoding = DecodeGemv.Supported ? 1 : 2;   // without AVX2 and FMA the products stay libtorch's
            using (no_grad())
            {
                Assert.Equal(decoding, ThreadsDuring(dense, oneToken));
                Assert.Equal(decoding, ThreadsDuring(dense, eightRows));
                Assert.Equal(2, ThreadsDuring(dense, prefill));
                Assert.Equal(2, ThreadsDuring(int8, oneToken));
            }
            Assert.Equal(2, ThreadsDuring(dense, oneToken));
            Assert.Equal(2, get_num_threads());
        }
        finally
        {
            set_num_threads(before);
        }
    }
}
