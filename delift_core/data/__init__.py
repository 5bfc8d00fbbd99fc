"""Reading datasets: the public loader and the Dataset type (`dataset`), text formats
(`readers`), Parquet and Arrow (`columnar`) and the schema rules that map fields to
instruction/input/output (`schemas`)."""
