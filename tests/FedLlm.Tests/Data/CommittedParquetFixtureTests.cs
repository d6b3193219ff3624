using FedLlm.Data;
using FedLlm.Data.Datasets;

namespace FedLlm.Tests.Data;

/// <summary>
/// Parquet files written by an independent writer (hyparquet-writer, tests/reference/parquet_fixtures/make_fixtures.mjs)
/// in pyarrow's layout, so the reader is not only tested on Parquet.Net's own output.
/// </summary>
public sealed class CommittedParquetFixtureTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "parquet", name);

    [Fact]
    public void FinGpt_file_from_another_writer_loads_with_labels()
    {
        var rows = DatasetLoader.ReadInstructions(DatasetKind.FinGptSentiment, Fixture("fingpt-sentiment-train.parquet")).ToList();

        Assert.Equal(4, rows.Count);
        Assert.Equal(DatasetFixtures.FinGptInstruction + " Orbit Bank cuts outlook", rows[1].Example.Instruction);
        Assert.Equal("moderately negative", rows[1].Example.Response);
        Assert.Equal(["positive", "negative", "neutral", "positive"], rows.Select(r => r.Label));
    }

    [Fact]
    public void Nested_lists_in_data_page_v2_are_refused_with_a_message_that_says_how_to_fix_the_file()
    {
        // hyparquet-writer writes only DATA_PAGE_V2; Parquet.Net 6.1 cannot decode repetition levels there (pyarrow, and
        // so the hub, writes v1 by default, which the Parquet.Net-written UltraFeedback fixture in DatasetLoaderTests
        // covers). This pins the limitation: if a Parquet.Net update lifts it, this test fails and should become a read test.
        var e = Assert.Throws<DataFormatException>(() =>
            DatasetLoader.ReadPreferences(DatasetKind.UltraFeedback, Fixture("ultrafeedback_binarized-train_sft.parquet")).ToList());

        Assert.Contains("data page v2", e.Problem);
        Assert.Contains("data_page_version", e.Problem);
    }
}
