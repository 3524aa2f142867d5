"""Reading, cleaning, Great Expectations gates, partitions, splits and rendering."""
