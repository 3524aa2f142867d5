"""Partitions shared by the data assets."""

import dagster as dg

# One partition per source file (bundled corpus, recipe path or landing-folder file).
source_partitions = dg.DynamicPartitionsDefinition(name="source_files")
