"""Writes the parquet fixtures of tests/inputs.rs with pyarrow (an independent writer).

    python crates/memory-layers-data/tests/data/make_parquet.py   # needs pyarrow
"""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
texts = [f"Parquet record {i}: to be, or not to be." for i in range(50)]
table = pa.table({"id": list(range(50)), "content": texts})
# Two row groups, snappy (pyarrow's default) and zstd.
pq.write_table(table, HERE / "records-snappy.parquet", row_group_size=30)
pq.write_table(table, HERE / "records-zstd.parquet", row_group_size=30, compression="zstd")
# Gzip pages, a codec this build does not read.
pq.write_table(table, HERE / "records-gzip.parquet", compression="gzip")
# A null and a number where text should be.
pq.write_table(pa.table({"content": ["one", None, "three"]}), HERE / "null-text.parquet")
pq.write_table(pa.table({"content": [1, 2]}), HERE / "int-text.parquet")
