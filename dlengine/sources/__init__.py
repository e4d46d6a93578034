"""Where bytes come from: one small interface, one module per source."""

from dlengine.sources.base import ObjectInfo, Source, Stream

__all__ = ["ObjectInfo", "Source", "Stream"]
