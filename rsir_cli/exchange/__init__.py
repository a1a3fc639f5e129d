"""`rsir export` and `rsir import`: a split of the store <-> one GeoParquet file (docs/geoparquet.md).

**Export** writes one (model, dataset, split) with :func:`rsir_cli.geoparquet.write_geoparquet`:
the embeddings and code bits are read from the store row group by row group
(:meth:`rsir_cli.store.EmbeddingStore.open_rows`), so memory is bounded by a row group, not by the
split. The file's ``rsir`` metadata carries the split's store attributes as they are (model,
weights checksum, bands, normalisation, pooling, dataset, label names, ...) and, under
``provenance.hashers``, every exported code table's attributes and its hasher's attributes and
parameters (arrays as ``{"dtype", "shape", "base64"}``: little-endian bytes, exact and compact).

**Import** reads a file back into the store, checking all it can before the store is touched:

- rsir's own files come back bit for bit -- embeddings, ids, labels and label names, dates,
  footprints, the provenance attributes (``imported_from`` is added, the original ``created``
  kept as ``source_created``) and the code tables, written with the store's ``write_codes`` so
  that they are current -- under the model, dataset and split names they were exported from;
- another tool's files are recorded as an *imported* model: model name ``imported`` (or the
  caller's), attributes ``imported: true``, ``imported_from`` and ``source_columns``, and no
  ``model_config``. rsir cannot embed a new tile like such a model, so ``rsir search TILE``
  refuses it (it checks :attr:`rsir_cli.provenance.Provenance.imported`); hashing, evaluation,
  search by id, indexing and benchmarks work on it like on any split.

A split the store already holds is left alone when it holds the same rows ("up to date"); other
content needs ``overwrite``. An error after writing began (a bad block deep in the file) throws
the run away (:meth:`rsir_cli.store.SplitWriter.abandon`): nothing is written.
"""

from rsir_cli.exchange.common import FOREIGN_SPLIT, IMPORTED_MODEL, decode_array, encode_array
from rsir_cli.exchange.exporting import ExportResult, current_code_tables, export_split, resolve_split
from rsir_cli.exchange.importing import ImportResult, import_file

__all__ = [
    "FOREIGN_SPLIT",
    "IMPORTED_MODEL",
    "ExportResult",
    "ImportResult",
    "current_code_tables",
    "decode_array",
    "encode_array",
    "export_split",
    "import_file",
    "resolve_split",
]
