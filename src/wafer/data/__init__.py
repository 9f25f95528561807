"""The data stages' library (synthesize, ingest, split, shard): wafer maps in, validated,
split without leaks, resized to shards; and the array files passed between stages."""
