"""Local buckets on mountpaths: placement, layout, durable writes."""
