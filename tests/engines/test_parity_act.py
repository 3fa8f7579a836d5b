"""Segments and recommendations: the same members and the same lists on DuckDB and Spark."""

import pytest
from parity import END, _same_frames

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.mark.parametrize("name", ["lapsed_high_value", "new_no_first_order", "cart_abandoners"])
def test_segment_members_are_identical(on_duckdb, on_spark, name):
    duck, spark = on_duckdb.segment(name, END), on_spark.segment(name, END)
    assert len(duck) > 0 or name == "new_no_first_order"
    _same_frames(duck, spark)


def test_recommendations_are_identical(on_duckdb, on_spark):
    duck = on_duckdb.recommendations(END, k=3).items
    spark = on_spark.recommendations(END, k=3).items
    assert len(duck) > 0
    _same_frames(duck, spark, ["user_id", "rank"])
