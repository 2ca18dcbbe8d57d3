"""The catalog: the committed record of what is indexed (DuckDB). The only subpackage importing duckdb.

No DuckDB exception leaves this subpackage: every public Catalog method raises StorageError (the disk is full
or failing: retry later), CatalogDamaged (the file does not read back: set it aside with `quarantine`),
IndexDirBusy or IndexDirError.

Its modules, by job: `schema` (the file, its tables and versions), `errors` (DuckDB's errors mapped to ours),
`base`, `writes`, `reads`, `roots` and `verify` (the parts of the Catalog, put together in `catalog`),
`migration` (from schema version 1), `merge` (catalogs merged in SQL), `quarantine` (a damaged one set aside).
The records a Catalog takes and returns live in chromatica_watch.core.records.
"""

from chromatica_watch.storage.catalog.catalog import Catalog, stored_fingerprint
from chromatica_watch.storage.catalog.merge import MergeCounts, merge_catalogs
from chromatica_watch.storage.catalog.migration import MIGRATING_SUFFIX, migrate_v1
from chromatica_watch.storage.catalog.quarantine import quarantine
from chromatica_watch.storage.catalog.schema import CATALOG_FILE, READABLE_VERSIONS, SCHEMA_VERSION
from chromatica_watch.storage.catalog.verify import Verified

__all__ = ["CATALOG_FILE", "MIGRATING_SUFFIX", "READABLE_VERSIONS", "SCHEMA_VERSION", "Catalog", "MergeCounts",
           "Verified", "merge_catalogs", "migrate_v1", "quarantine", "stored_fingerprint"]
